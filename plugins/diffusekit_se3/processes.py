"""The SE(3) diffusion process of Jiang et al. 2023 (DiffusionReg) and an IGSO(3) variant.

State: homogeneous matrices H (B, 4, 4) in float (the pose that maps the source cloud onto
the model cloud). Time t in [t_min, 1] with the cosine schedule of Nichol & Dhariwal 2021:
abar(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t + s)/(1 + s)), s = 0.008, so abar(0) = 1 and
abar(1) = 0.

Forward process (``se3``): the mean is the point sqrt(abar_t) of the way along the geodesic
from the identity to H0, M_t = exp(sqrt(abar_t) log H0), and the noise is left-multiplied in
the Lie algebra:

    H_t = exp(sqrt(1 - abar_t) diag(sr 1_3, st 1_3) eps) M_t,   eps ~ N(0, I_6)

(twist order (omega, v); defaults sr = 0.05, st = 0.03). At t = 1 this is exp(diag(s) eps):
noise around the identity, the prior. ``igso3``: the same mean, with the rotation part of
the noise drawn from IGSO(3) with scale sqrt(1 - abar_t) sr and a Gaussian translation
sqrt(1 - abar_t) st eps_v (left-multiplied [R_noise | t_noise]).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import ShapeError
from diffusekit.process import ForwardProcess, LieGroup, Perturbed
from diffusekit.random import rand, randn

from . import lie


class SE3Config(ComponentConfig):
    sr: float = Field(0.05, gt=0, description="rotation noise scale (radians) at t = 1")
    st: float = Field(0.03, gt=0, description="translation noise scale at t = 1")
    cosine_s: float = Field(0.008, ge=0, description="offset s of the cosine schedule")
    t_min: float = Field(0.005, gt=0, lt=1, description="smallest training time (1/200: T = 200 of the paper)")


class IGSO3Config(SE3Config):
    sr: float = Field(0.5, gt=0, description="IGSO(3) scale of the rotation noise at t = 1")


class SE3Diffusion(ForwardProcess, LieGroup):
    """DiffusionReg's forward process on SE(3) with left-multiplied Gaussian algebra noise."""

    Config = SE3Config
    algebra_dim = 6
    t_max = 1.0
    default_parameterization = "pose"
    preferred_samplers = ("se3-ancestral",)
    noise_law: Literal["gaussian", "igso3"] = "gaussian"

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return self.config.t_min

    # -- schedule -------------------------------------------------------------------------
    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """abar(t) = f(t)/f(0) with f(t) = cos^2(pi/2 (t + s)/(1 + s)); exactly 0 at t = 1."""
        s = self.config.cosine_s
        t64 = t.to(torch.float64)
        f = torch.cos(math.pi / 2 * (t64 + s) / (1 + s)) ** 2
        f0 = math.cos(math.pi / 2 * s / (1 + s)) ** 2
        return torch.where(t64 >= 1.0, torch.zeros_like(f), (f / f0).clamp(0.0, 1.0)).to(t.dtype)

    def scales(self, dtype=torch.float64, device="cpu") -> torch.Tensor:
        """diag(sr 1_3, st 1_3) as a (6,) vector."""
        c = self.config
        return torch.tensor([c.sr] * 3 + [c.st] * 3, dtype=dtype, device=device)

    # -- LieGroup -------------------------------------------------------------------------
    def exp(self, xi):
        return lie.se3_exp(xi)

    def log(self, g):
        return lie.se3_log(g)

    def hat(self, xi):
        return lie.se3_hat(xi)

    def vee(self, m):
        return lie.se3_vee(m)

    def inverse(self, g):
        return lie.se3_inverse(g)

    # -- process --------------------------------------------------------------------------
    def sample_time(self, n: int, generator=None, device="cpu") -> torch.Tensor:
        lo = self.config.t_min
        return lo + (1.0 - lo) * rand((n,), generator, device, torch.float32)

    def geodesic_mean(self, h0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """M_t = exp(sqrt(abar_t) log H0)."""
        k = torch.sqrt(self.alpha_bar(t)).to(torch.float64)[:, None]
        return lie.se3_exp(k * lie.se3_log(h0.to(torch.float64)))

    def noise_matrix(self, scale: torch.Tensor, generator=None, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(exp of the scaled algebra noise, the standard noise eps) for per-sample ``scale`` (B,)."""
        n = scale.shape[0]
        eps = randn((n, 6), generator, device, torch.float64)
        k = scale.to(torch.float64)[:, None]
        if self.noise_law == "gaussian":
            return lie.se3_exp(k * self.scales(device=device) * eps), eps
        rot = torch.stack([lie.so3_exp(lie.igso3_sample(1, max(float(v) * self.config.sr, 1e-6),
                                                        _one(generator, i)))[0] for i, v in enumerate(k[:, 0])])
        trans = k * self.config.st * eps[:, 3:]
        return lie.from_rt(rot.to(device), trans), eps

    def perturb(self, x0, t, cond=None, generator=None) -> Perturbed:
        mean = self.geodesic_mean(x0, t)
        noise, eps = self.noise_matrix(torch.sqrt(1 - self.alpha_bar(t)), generator, x0.device)
        return Perturbed(x_t=(noise @ mean).to(x0.dtype), t=t, noise=eps.to(x0.dtype), x0=x0)

    def prior(self, n, shape=(4, 4), cond=None, generator=None, device="cpu", dtype=torch.float32):
        """H_T = (noise at t = 1) times the identity."""
        noise, _ = self.noise_matrix(torch.ones(n, dtype=torch.float64), generator, device)
        return noise.to(dtype)

    def check_state(self, x, shape=None, loc="x"):
        if not torch.is_tensor(x) or x.ndim != 3 or tuple(x.shape[1:]) != (4, 4):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ShapeError(f"{loc}: SE(3) states are homogeneous matrices (B, 4, 4), got {got}")

    # -- conformance ----------------------------------------------------------------------
    def conformance_example(self, n: int, generator=None):
        """Random poses (rotation up to 90 degrees) and clouds with known correspondences."""
        g = generator if isinstance(generator, torch.Generator) else None
        axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
        axis = axis / axis.norm(dim=-1, keepdim=True)
        angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * math.pi / 2
        h0 = lie.from_rt(lie.so3_exp(axis * angle), 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64))
        source = torch.randn(n, 32, 3, generator=g, dtype=torch.float64)
        model = lie.transform(h0, source)
        return h0.float(), {"source": source.float(), "model": model.float()}

    def conformance_network(self, parameterization) -> torch.nn.Module:
        from .networks import KabschOracle

        return KabschOracle()


class IGSO3Diffusion(SE3Diffusion):
    """The SE(3) process with IGSO(3) rotation noise and Gaussian translation noise."""

    Config = IGSO3Config
    noise_law = "igso3"


def _one(generator: Any, i: int):
    """The i-th per-sample generator (or the shared one)."""
    if isinstance(generator, (list, tuple)):
        return generator[i]
    return generator
