"""``ddim-renoise``: DDIM in the explicit x0 / eps form, for solver-aware guidance (CFG++).

DDIM (Song et al. 2021a, eqs. 12 and 16) from t to s on x_t = a x0 + b y + c eps:

  x_s = a_s x0_hat + b_s y + k eps_hat + sigma z,
  sigma = eta c_s sqrt(1 - (a_t c_s / (a_s c_t))^2)   (the q(x_s | x_t, x0) std times eta),
  k = sqrt(c_s^2 - sigma^2).

Unlike a solver written as x_s = w x_t + d x0 (which only reads x0), this update reads the
prediction's ``x0`` and ``eps`` separately, so a guided prediction may renoise with a different
noise estimate than the one implied by its x0 (CFG++: ``renoise_eps = True``). With consistent
predictions it is the ordinary DDIM. The last step lands on t_min with sigma = 0 and
k = c(t_min) (no division by zero at any step).
"""

from __future__ import annotations

import torch
from pydantic import Field

from diffusekit.process import AdditiveGaussian, PinnedBridge
from diffusekit.random import randn_like
from diffusekit.sampler import Plan, SamplerConfig, StepSampler


class DDIMRenoiseConfig(SamplerConfig):
    steps: int = Field(50, ge=1, le=100_000, description="number of steps (= NFE without guidance batching)")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="0: deterministic DDIM; 1: DDPM posterior noise")
    schedule: str = Field("uniform", description="time grid (registered schedule name)")


class DDIMRenoise(StepSampler):
    """DDIM x_s = a_s x0 + k eps + sigma z reading x0 and eps separately (renoise_eps)."""

    Config = DDIMRenoiseConfig
    requires = (AdditiveGaussian,)
    #: eps = (x - a x0 - b y) / c is undefined where a bridge is pinned (c = 0)
    excludes = (PinnedBridge,)
    renoise_eps = True

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.eta > 0

    def build_plan(self, process) -> Plan:
        from diffusekit.api import create

        t = create("schedule", self.config.schedule, loc="sampler.schedule").times(process, self.config.steps)
        t = t.to(torch.float64)
        a, b, c = (v.to(torch.float64) for v in process.coefficients(t))
        a_t, c_t, a_s, c_s = a[:-1], c[:-1], a[1:], c[1:]
        # DDPM posterior variance of x_s given x_t and x0 (Song et al. 2021a, eq. 16 with eta)
        ratio = (a_t * c_s / (a_s * c_t)) ** 2
        sigma = self.config.eta * c_s * torch.sqrt((1 - ratio).clamp_min(0.0))
        k = torch.sqrt((c_s ** 2 - sigma ** 2).clamp_min(0.0))
        return Plan(t, {"a_next": a_s, "k": k, "sigma": sigma, "a": a_t, "c": c_t})

    def renoise_ratio(self, process) -> tuple[torch.Tensor, torch.Tensor]:
        """(grid, r_i) with r_i = (k_i / a_{i+1}) / (c_i / a_i): a CFG++ step with lambda equals CFG
        with w = lambda / (1 - r_i) (the :meth:`diffusekit.sampler.Sampler.renoise_ratio` hook that
        CFG++ ``equivalent_w`` reads; see diffusekit_guidance.cfg)."""
        plan = self.build_plan(process)
        co = plan.coef
        return plan.t, (co["k"] / co["a_next"]) / (co["c"] / co["a"])

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = denoiser(x, plan.t[i].expand(x.shape[0]), cond)
        co = plan.coef
        out = co["a_next"][i] * pred.x0 + co["k"][i] * pred.eps
        y = denoiser.process.endpoint(cond, x)
        if y is not None:  # x = z + b y for processes with an endpoint
            b_next = denoiser.process.coefficients(plan.t[i + 1:i + 2])[1]
            out = out + b_next * y
        if self.config.eta > 0:
            out = out + co["sigma"][i] * randn_like(x, generator)
        return out, None, pred
