"""Drive the peer samplers (k-diffusion, diffusers) with diffusekit's exact oracle denoisers.

Used only by ``benchmarks/solvers.py`` and the peer-agreement tests (``pip install
diffusekit[bench]``); nothing in the solvers imports it.

* k-diffusion: its ``sampling`` module imports ``k_diffusion.utils``, which pulls torchvision /
  PIL for training utilities. :func:`kdiffusion_sampling` loads ``sampling.py`` alone with a
  minimal ``utils`` providing the one helper it uses (``append_dims``), so the samplers run with
  only torch, scipy, torchdiffeq and torchsde installed.
* diffusers: schedulers are driven with their default configs through ``set_timesteps`` /
  ``scale_model_input`` / ``step``; the model output (eps) comes from the exact denoiser at the
  scheduler's own noise level.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Callable

import torch

X0Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x~, sigma~ (B,)) -> x0_hat


def kdiffusion_sampling():
    """k-diffusion's ``sampling`` module, or None when k-diffusion is not installed."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = spec.submodule_search_locations[0]
    try:
        import k_diffusion.sampling as mod  # full install (torchvision present)

        return mod
    except ImportError:
        pass
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [root]
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    sys.modules["k_diffusion"], sys.modules["k_diffusion.utils"] = pkg, utils
    sspec = importlib.util.spec_from_file_location("k_diffusion.sampling", f"{root}/sampling.py")
    mod = importlib.util.module_from_spec(sspec)
    sys.modules["k_diffusion.sampling"] = mod
    try:
        sspec.loader.exec_module(mod)
    except ImportError:
        for k in ("k_diffusion", "k_diffusion.utils", "k_diffusion.sampling"):
            sys.modules.pop(k, None)
        return None
    pkg.sampling, pkg.utils = mod, utils
    return mod


def run_kdiffusion(name: str, x0_fn: X0Fn, x_tilde: torch.Tensor, sigmas: torch.Tensor,
                   generator: torch.Generator | None = None, **kw) -> tuple[torch.Tensor, int]:
    """Run ``k_diffusion.sampling.sample_<name>`` on x~ (VE form); returns (x, NFE)."""
    ks = kdiffusion_sampling()
    calls = [0]

    def model(x, sigma, **_):
        calls[0] += 1
        return x0_fn(x, sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma)

    extra = {}
    if generator is not None and name in ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde"):
        extra["noise_sampler"] = lambda s, sn: torch.randn(x_tilde.shape, generator=generator, dtype=x_tilde.dtype)
    out = getattr(ks, f"sample_{name}")(model, x_tilde, sigmas, disable=True, **extra, **kw)
    return out, calls[0]


def diffusers_scheduler(name: str, **config):
    """A diffusers scheduler with its default configuration (or None when not installed)."""
    try:
        import diffusers
    except ImportError:
        return None
    cls = {"DPMSolverMultistep": diffusers.DPMSolverMultistepScheduler,
           "UniPCMultistep": diffusers.UniPCMultistepScheduler,
           "DDIM": diffusers.DDIMScheduler, "Euler": diffusers.EulerDiscreteScheduler}[name]
    return cls(**config)


def run_diffusers(scheduler, x0_fn: X0Fn, x_T: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """Sample with a diffusers VP scheduler from x_T ~ N(0, I); returns (x, NFE)."""
    scheduler.set_timesteps(steps)
    acp = scheduler.alphas_cumprod.to(torch.float64)
    sigmas = getattr(scheduler, "sigmas", None)
    is_euler = type(scheduler).__name__.startswith("Euler")
    x = x_T * scheduler.init_noise_sigma
    nfe = 0
    for i, t in enumerate(scheduler.timesteps):
        inp = scheduler.scale_model_input(x, t)
        if is_euler:  # VP state = x / sqrt(sigma^2 + 1); sigma~ = sigma
            s = float(sigmas[i])
            a, c = (1.0 / (1 + s * s)) ** 0.5, s * (1.0 / (1 + s * s)) ** 0.5
        else:
            ab = float(acp[int(t)])
            a, c = ab ** 0.5, (1 - ab) ** 0.5
        sig = torch.full((x.shape[0],), c / a, dtype=x.dtype)
        x0 = x0_fn(inp / a, sig)
        eps = (inp - a * x0) / c
        nfe += 1
        x = scheduler.step(eps, t, x).prev_sample
    return x, nfe


def sigma_form_oracle(mixture):
    """Exact x0_hat(x~, sigma~) for x~ = x0 + sigma~ eps (the VE / EDM form every peer can use)."""
    from diffusekit.process import AdditiveGaussian
    from diffusekit.testing.oracles import MixtureOracle

    class SigmaForm(AdditiveGaussian):
        """x = x0 + t eps (t = sigma~): the scaled form of any Gaussian process."""

        t_min, t_max = 0.0, float("inf")

        def coefficients(self, t):
            return torch.ones_like(t), torch.zeros_like(t), t

    oracle = MixtureOracle(mixture, SigmaForm())
    return lambda x, sigma: oracle(x, sigma.to(x.dtype))
