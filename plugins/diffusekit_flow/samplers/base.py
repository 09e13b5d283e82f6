"""Shared grid and velocity evaluation of the flow samplers (``flow-euler``, ``flow-heun``,
``flow-midpoint``, ``flow-sde``).

They integrate dx/dt = u(x, t), u = a' x0 + b' y + c' eps (the network's own output under the
``velocity`` parameterization, else derived from its x0 / eps prediction), backwards in time on
the path's native grid: uniform in t from ``t_start`` (default: the process's t_max) to
``t_end`` (default: t = 0 on an :class:`~diffusekit_flow.processes.Interpolant` path, where x_t is
the data; the process's t_min otherwise). The network is never evaluated at ``t_end``: the last
step lands there (on the linear path the Euler step to t = 0 is x - t u = x0_hat).

``shift`` s warps the uniform fraction r in [0, 1] of the way from t_end to t_start into
s r / (1 + (s - 1) r) (the time shift of Esser et al. 2024): s = 1 is the plain uniform grid,
s > 1 spends more steps near the noise end (SD3 uses 3 at 1024 px), s < 1 near the data end.
The default 0.5 halves the step at the data end, where the posterior E[x0 | x_t] sharpens and
the velocity changes fastest: with the exact velocity of the 8-Gaussian ring the 5-step midpoint
rule reaches the data-vs-data MMD floor with 0.5 but not with 1 (docs/benchmarks.md).

Each step is a few tensor operations on per-sample times (B,) with host-side step sizes from
an immutable float64 plan: no host sync, no branching on tensor values.
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from diffusekit.errors import ConfigError
from diffusekit.process import AdditiveGaussian, PinnedBridge
from diffusekit.sampler import Plan, SamplerConfig, StepSampler

from ..processes import Interpolant
from ..velocity import velocity_of


class FlowODEConfig(SamplerConfig):
    steps: int = Field(10, ge=1, le=100_000, description="number of steps on the time grid")
    shift: float = Field(0.5, gt=0.0, description="time shift s: r -> s r / (1 + (s - 1) r) of the uniform "
                         "grid (1: plain uniform; s > 1: more steps near noise; s < 1: near data)")
    t_start: Optional[float] = Field(None, gt=0.0, le=1e6, description="first time (default: the process's t_max)")
    t_end: Optional[float] = Field(None, ge=0.0, description="last time (default: 0 on interpolant paths, where "
                                   "x_t is the data; else the process's t_min)")


def flow_grid(process, steps: int, shift: float = 1.0, t_start: Optional[float] = None,
              t_end: Optional[float] = None) -> torch.Tensor:
    """Decreasing float64 times (steps + 1,) from t_start to t_end, uniform after the shift."""
    hi = float(process.t_max if t_start is None else t_start)
    if t_end is not None:
        lo = float(t_end)
    else:
        lo = float(process.t_data) if isinstance(process, Interpolant) else float(process.t_min)
    if not hi > lo:
        raise ConfigError(f"the grid starts at t_start = {hi} and ends at t_end = {lo}; t_start must exceed t_end",
                          loc="sampler.t_start")
    r = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if shift != 1.0:
        r = shift * r / (1 + (shift - 1) * r)
    t = lo + (hi - lo) * r
    t[0], t[-1] = hi, lo
    return t


class FlowSampler(StepSampler):
    """Base of the flow ODE samplers: grid, step sizes, velocity of a prediction."""

    Config = FlowODEConfig
    requires = (AdditiveGaussian,)
    #: a bridge pinned at the condition has c = 0 at t_max: x0 and eps are not identified there
    excludes = (PinnedBridge,)

    def grid(self, process) -> torch.Tensor:
        cfg = self.config
        return flow_grid(process, cfg.steps, cfg.shift, cfg.t_start, cfg.t_end)

    def build_plan(self, process) -> Plan:
        t = self.grid(process)
        return Plan(t, {"h": t[1:] - t[:-1], "tm": (t[1:] + t[:-1]) / 2})

    def host(self, plan: Plan) -> dict[str, list[float]]:
        """The plan's per-step coefficients as host floats (read once per plan, as the Gaussian
        solvers do), so a step is one fused ``add(..., alpha=h)`` per update."""
        cache = self.__dict__.setdefault("_host", {})
        if id(plan) not in cache:
            cache.clear()
            cache[id(plan)] = {k: [float(v) for v in c.tolist()] for k, c in plan.coef.items()}
        return cache[id(plan)]

    def velocity(self, denoiser, x, t, cond):
        """(u, prediction) at per-sample time t (B,)."""
        pred = denoiser(x, t, cond)
        return velocity_of(pred), pred
