"""Deterministic DDIM (Song, Meng & Ermon 2021, eq. 12 with eta = 0) for any AdditiveGaussian
process x_t = a(t) x0 + b(t) y + c(t) eps.

From the denoiser's estimates (x0_hat, eps_hat) at time t_i, the next state is

    x_{i+1} = a(t_{i+1}) x0_hat + b(t_{i+1}) y + c(t_{i+1}) eps_hat,

i.e. the sample keeps its predicted noise and moves to the next noise level. For VP this is
exactly DDIM's update; it is the first-order solver of the probability-flow ODE in the
(x / c, a / c) variables. The last step lands on t_min, where c(t_min) is small and
finite, so the final state never divides by zero (no NaN at the end).
"""

from __future__ import annotations

import torch
from pydantic import Field

from diffusekit.process import AdditiveGaussian, PinnedBridge, bcast
from diffusekit.sampler import Plan, SamplerConfig, StepSampler


class DDIMConfig(SamplerConfig):
    steps: int = Field(50, ge=1, le=100_000, description="number of DDIM steps (= NFE)")
    schedule: str = Field("uniform", description="registered time grid (uniform, quadratic, logsnr, ...)")


class DDIM(StepSampler):
    """Deterministic DDIM (eta = 0) over a precomputed plan; NFE = steps."""

    Config = DDIMConfig
    requires = (AdditiveGaussian,)
    #: eps = (x - a x0 - b y) / c is undefined where a bridge is pinned (c = 0)
    excludes = (PinnedBridge,)

    def build_plan(self, process) -> Plan:
        from diffusekit.api import create

        grid = create("schedule", self.config.schedule, loc="sampler.schedule")
        t = grid.times(process, self.config.steps).to(torch.float64)
        a, b, c = (v.to(torch.float64) for v in process.coefficients(t))
        return Plan(t, {"a": a, "b": b, "c": c})

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        t = plan.t[i].expand(x.shape[0])
        pred = denoiser(x, t, cond)
        a, c = plan.coef["a"][i + 1], plan.coef["c"][i + 1]
        x_next = a * pred.x0 + c * pred.eps
        y = denoiser.process.endpoint(cond, x)
        if y is not None:
            x_next = x_next + bcast(plan.coef["b"][i + 1], x) * y
        return x_next, carry, pred
