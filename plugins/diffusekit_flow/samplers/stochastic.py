"""``flow-sde``: Euler-Maruyama on an SDE whose marginals are those of the flow.

For any diffusion coefficient sigma(t) >= 0 the reverse-time SDE

    dx = [u(x, t) - sigma(t)^2 / 2 grad log p_t(x)] dt + sigma(t) dW   (t from 1 to 0)

has the marginals p_t of the flow dx/dt = u [derived: its Fokker-Planck equation in forward
time is d_t p = -div(u p) - (sigma^2 / 2) (div(p grad log p) - Lap p) = -div(u p), the
continuity equation of u]. With grad log p_t = -eps_hat / c the step t_i -> t_{i+1}
(h = t_{i+1} - t_i < 0) is

    x_{i+1} = x_i + h (u + sigma_i^2 / (2 c_i) eps_hat) + sigma_i sqrt(-h) z.

``diffusion`` chooses sigma(t) = noise_scale * {``sigma``: c(t) (Ma et al. 2024, SiT's
w_t = sigma_t); ``constant``: 1; ``process``: g(t) of the process's forward SDE, which makes
this the reverse SDE of Song et al. 2021 (on the linear path g^2 = 2 t / (1 - t), stiff near
t = 1)}. sigma = 0 is the ODE (Euler). ``denoise_final``: the last step is the noise-free ODE
step (on the linear path it returns x0_hat). NFE = steps.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.process import SDE, AdditiveGaussian
from diffusekit.random import randn_like
from diffusekit.sampler import Plan
from diffusekit.state import batch_size

from .base import FlowODEConfig, FlowSampler


class FlowSDEConfig(FlowODEConfig):
    steps: int = Field(100, ge=1, le=100_000, description="Euler-Maruyama steps (= NFE)")
    diffusion: Literal["sigma", "constant", "process"] = Field(
        "sigma", description="sigma(t) / noise_scale: c(t), 1, or the process's forward-SDE g(t)")
    noise_scale: float = Field(1.0, ge=0.0, description="multiplies sigma(t); 0 gives the ODE")
    denoise_final: bool = Field(True, description="last step: noise-free ODE step")


class FlowSDE(FlowSampler):
    """Euler-Maruyama on the marginal-preserving SDE with a chosen diffusion sigma(t); NFE = steps."""

    Config = FlowSDEConfig
    stochastic = True

    def required_capabilities(self) -> tuple:
        return (AdditiveGaussian, SDE) if self.config.diffusion == "process" else self.requires

    def final_step_deterministic(self) -> bool:
        return self.config.denoise_final

    def sigma(self, process, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.diffusion == "sigma":
            s = process.coefficients(t)[2].abs()
        elif cfg.diffusion == "constant":
            s = torch.ones_like(t)
        else:
            s = process.diffusion(t)
        return cfg.noise_scale * s

    def build_plan(self, process) -> Plan:
        t = self.grid(process)
        h = t[1:] - t[:-1]
        ti = t[:-1]
        c = process.coefficients(ti)[2].abs()
        sig = self.sigma(process, ti)
        score_w = torch.where(sig > 0, sig ** 2 / (2 * c), torch.zeros_like(sig))
        noise = sig * torch.sqrt(-h)
        if self.config.denoise_final:
            score_w[-1], noise[-1] = 0.0, 0.0
        if not bool(torch.isfinite(score_w).all() & torch.isfinite(noise).all()):
            bad = int((~torch.isfinite(score_w) | ~torch.isfinite(noise)).nonzero()[0])
            from diffusekit.errors import ConfigError

            raise ConfigError(f"diffusion '{self.config.diffusion}' is not finite at t = {float(ti[bad]):.4g} "
                              f"(c(t) = {float(c[bad]):.3g}); lower t_start, or use diffusion='sigma'",
                              loc="sampler.diffusion")
        return Plan(t, {"h": h, "score_w": score_w, "noise": noise})

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        u, pred = self.velocity(denoiser, x, plan.t[i].expand(batch_size(x)), cond)
        host = self.host(plan)
        h = host["h"][i]
        last = i == plan.num_steps - 1
        if last and self.config.denoise_final:
            return x.add(u, alpha=h), carry, pred
        drift = u.add(pred.eps, alpha=host["score_w"][i])
        return x.add(drift, alpha=h).add(randn_like(x, generator), alpha=host["noise"][i]), carry, pred

