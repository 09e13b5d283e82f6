"""Reverse sampling on SE(3) (Jiang et al. 2023, the DiffusionReg reverse process).

Grid t_i = i / N, i = N..0 (t_N = 1: the prior around the identity; t_0 = 0: data). A step
t = t_i -> s = t_{i-1} with alpha = abar_t / abar_s, beta = 1 - alpha:

    H_s = exp(g0 log H0_hat + g1 log H_t),
    g0 = beta sqrt(abar_s) / (1 - abar_t),   g1 = (1 - abar_s) sqrt(alpha) / (1 - abar_t),

the Lie-algebra form of the DDPM posterior mean; then (stochastic variant) left-multiplied
noise exp(sqrt(btilde) diag(sr, st) eps), btilde = (1 - abar_s) beta / (1 - abar_t). Since
g0 + g1 sqrt(abar_t) = sqrt(abar_s), a noise-free step with H0_hat = H0 from the geodesic point
exp(sqrt(abar_t) log H0) lands on exp(sqrt(abar_s) log H0): it stays on the forward geodesic.
The last step has abar_s = 1, so g0 = 1, g1 = 0, btilde = 0: it returns H0_hat. NFE = steps
(the paper samples with 5 steps, sr = 0.1, st = 0.01).
"""

from __future__ import annotations

import torch
from pydantic import Field

from diffusekit.random import randn
from diffusekit.sampler import Plan, SamplerConfig, StepSampler

from . import lie
from .processes import SE3Diffusion


class SE3AncestralConfig(SamplerConfig):
    steps: int = Field(5, ge=1, le=10_000, description="reverse steps N (= NFE; the paper uses 5)")
    stochastic: bool = Field(True, description="left-multiply algebra noise (False: deterministic variant)")
    sr: float = Field(0.1, ge=0, description="rotation noise scale of the reverse steps")
    st: float = Field(0.01, ge=0, description="translation noise scale of the reverse steps")


class SE3Ancestral(StepSampler):
    """DiffusionReg's reverse process: geodesic posterior-mean steps with algebra noise."""

    Config = SE3AncestralConfig
    requires = (SE3Diffusion,)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.stochastic

    def final_step_deterministic(self) -> bool:
        return True

    def build_plan(self, process) -> Plan:
        n = self.config.steps
        t = torch.arange(n, -1, -1, dtype=torch.float64) / n
        ab = process.alpha_bar(t)
        ab_t, ab_s = ab[:-1], ab[1:]
        alpha = ab_t / ab_s
        beta = 1 - alpha
        g0 = beta * torch.sqrt(ab_s) / (1 - ab_t)
        g1 = (1 - ab_s) * torch.sqrt(alpha) / (1 - ab_t)
        btilde = (1 - ab_s) * beta / (1 - ab_t)
        return Plan(t, {"g0": g0, "g1": g1, "noise": torch.sqrt(btilde.clamp_min(0.0))})

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        t = plan.t[i].expand(x.shape[0])
        pred = denoiser(x, t, cond)
        h0 = pred.x0.to(torch.float64)
        xi = plan.coef["g0"][i].double() * lie.se3_log(h0) + plan.coef["g1"][i].double() * lie.se3_log(x.double())
        out = lie.se3_exp(xi)
        if self.config.stochastic and i < plan.num_steps - 1:
            scales = torch.tensor([self.config.sr] * 3 + [self.config.st] * 3, dtype=torch.float64, device=x.device)
            eps = randn((x.shape[0], 6), generator, x.device, torch.float64)
            out = lie.se3_exp(plan.coef["noise"][i].double() * scales * eps) @ out
        return out.to(x.dtype), carry, pred
