"""Common engine of the Gaussian solvers: grid, immutable plan, lean sampling loop.

Each solver builds, once per (process, grid, steps), a :class:`~diffusekit.sampler.Plan`
whose per-step coefficients are computed in float64 on the host. A step is then a handful of
tensor ops ``x_next = cx x + cy y + sum_j cd_j D_j + cn xi`` (D_j: data or noise predictions,
xi: fresh noise drawn with per-sample generators) with no host sync and no branching on
tensor values. The loop records whether each state is finite on the device and checks once
at the end, naming the first bad step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from pydantic import Field

from diffusekit.api import create
from diffusekit.errors import ConfigError
from diffusekit.random import randn_like
from diffusekit.sampler import FiniteTracker, Plan, SamplerConfig, StepSampler

from diffusekit.process import AdditiveGaussian, DenoisingODE, PinnedBridge

from .gaussian import (Point, data_prediction, ends_at_zero_by_default, endpoint,
                       noise_prediction, point, t_of_lambda, zero_noise_time)
from .teleport import teleport_state


class SolverConfig(SamplerConfig):
    steps: int = Field(10, ge=1, le=100_000, description="number of solver steps")
    schedule: Union[str, dict] = Field(
        "logsnr", description="time grid: a registered schedule name or {'name': ..., **params}")
    teleport: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="skip this fraction of the log-SNR range with the exact Gaussian-data PF-ODE "
                    "solution (needs fit_gaussian_stats(pipe, data)); 0 disables")
    final_sigma_zero: Optional[bool] = Field(
        None, description="end the grid at sigma = 0 (default: yes for EDM-style sigma processes, "
                          "no for VP/VE, which end at the process's t_min)")


@dataclass
class Carry:
    """Per-call solver memory (never stored on the sampler)."""

    rows: list[dict[str, float]]
    times: dict[str, list[torch.Tensor]]
    y: Optional[torch.Tensor]
    batch: int
    history: list[torch.Tensor] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def t(self, key: str, i: int) -> torch.Tensor:
        """Per-sample time (B,) for the evaluation ``key`` of step ``i``."""
        return self.times["t_" + key][i].expand(self.batch)

    def evaluate(self, denoiser, x: torch.Tensor, i: int, key: str, cond: Any, kind: str = "x0"):
        """Call the denoiser at the evaluation point ``key`` of step ``i``.

        Returns (prediction, D) with D the data prediction x0_hat (``kind="x0"``) or the noise
        prediction eps_hat (``kind="eps"``), converted with the plan's float64 (a, b, c).
        """
        row = self.rows[i]
        pred = denoiser(x, self.times["t_" + key][i].expand(self.batch), cond)
        p = Point(row["t_" + key], row["a_" + key], row["b_" + key], row["c_" + key])
        conv = data_prediction if kind == "x0" else noise_prediction
        return pred, conv(pred, x, self.y, p)


def eval_point(row: dict[str, float], key: str, p: Point) -> None:
    """Record an evaluation point (time and a, b, c) in a plan row under ``key``."""
    row["t_" + key], row["a_" + key], row["b_" + key], row["c_" + key] = p.t, p.a, p.b, p.c


def combine(x: torch.Tensor, row: dict[str, float], terms: list[tuple[str, torch.Tensor]],
            y: Optional[torch.Tensor], cx: str = "cx", cy: str = "cy") -> torch.Tensor:
    """cx * x + cy * y + sum(row[name] * D for name, D in terms) with host-side coefficients."""
    out = x * row[cx]
    for name, d in terms:
        out = out.add(d, alpha=row[name])
    if y is not None:
        out = out.add(y, alpha=row[cy])
    return out


def z_fold(p_from: Point, p_to: Point, wz: float) -> tuple[float, float]:
    """(cx, cy) of a z-space update z_to = wz z_from + ... written on x = z + b y."""
    return wz, p_to.b - wz * p_from.b


class GaussianSolver(StepSampler):
    """Base of the solvers here.

    Deterministic configurations solve the probability-flow ODE in its denoising form, so they
    run on every AdditiveGaussian or DenoisingODE process (PFGM++ included); configurations
    that inject noise (``stochastic``) need Gaussian noise (AdditiveGaussian). Bridges pinned
    at the condition (c = 0 at t_max) are refused: the grid would start where eps = (x - a x0
    - b y) / c divides by zero; their own samplers start from the condition.
    """

    Config = SolverConfig
    requires = ((AdditiveGaussian, DenoisingODE),)
    excludes = (PinnedBridge,)

    def required_capabilities(self) -> tuple:
        return (AdditiveGaussian,) if self.stochastic else self.requires

    # -- grid ---------------------------------------------------------------------------------
    def ends_at_zero(self, process) -> bool:
        flag = self.config.final_sigma_zero
        if flag is None:
            return ends_at_zero_by_default(process)
        if flag and zero_noise_time(process) is None:
            raise ConfigError(f"{type(process).__name__} never reaches sigma = 0; set final_sigma_zero=False",
                              loc="sampler.final_sigma_zero")
        return flag

    def final_is_zero(self, process) -> bool:
        """Whether the grid's last time has sigma = 0 (by default / by config, or an explicit list)."""
        spec = self.config.schedule
        if isinstance(spec, dict) and spec.get("name") == "explicit":
            return point(process, float(spec["times"][-1])).c == 0.0
        return self.ends_at_zero(process)

    def start_time(self, process, t_end: float) -> float:
        """t_max, or the teleport target: lambda_start = lambda_max + f (lambda_end - lambda_max)."""
        f = self.config.teleport
        if f == 0.0:
            return float(process.t_max)
        lam_hi, lam_lo = point(process, process.t_max).lam, point(process, t_end).lam
        return t_of_lambda(process, lam_hi + f * (lam_lo - lam_hi))

    def grid(self, process, intervals: int) -> list[float]:
        """``intervals + 1`` decreasing float64 times from the start to the end.

        When the grid ends at sigma = 0 the schedule spans [t_start, t_min] with
        ``intervals - 1`` intervals and the time of sigma = 0 is appended (EDM, Karras et al.
        2022, eq. 5 followed by sigma_N = 0).
        """
        spec = self.config.schedule
        if isinstance(spec, dict) and spec.get("name") == "explicit":  # used as given (may end at sigma = 0)
            if self.config.teleport:
                raise ConfigError("teleport needs a generated grid; with an explicit list start it at the "
                                  "teleport time yourself", loc="sampler.teleport")
            return [float(v) for v in create("schedule", spec, loc="sampler.schedule").times(process, intervals)]
        zero = self.ends_at_zero(process)
        t_min = float(process.t_min)
        t_start = self.start_time(process, t_min)
        name, params = (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items() if k != "name"})
        n = intervals - 1 if zero else intervals
        if self.config.teleport:
            params.setdefault("t_start", t_start)
        if n >= 1:
            grid = create("schedule", {"name": name, **params}, loc="sampler.schedule").times(process, n)
            ts = [float(v) for v in grid]
        else:
            ts = [t_start]
        if zero:
            ts.append(zero_noise_time(process))
        if len(ts) != intervals + 1 or any(b >= a for a, b in zip(ts, ts[1:])):
            raise ConfigError(f"time grid {ts[:4]}... must hold {intervals + 1} strictly decreasing times",
                              loc="sampler.schedule")
        return ts

    def points(self, process, ts: list[float]) -> list[Point]:
        return [point(process, t) for t in ts]

    # -- plan ---------------------------------------------------------------------------------
    @staticmethod
    def make_plan(ts: list[float], rows: list[dict[str, float]]) -> Plan:
        """Stack per-step rows (missing keys = 0) into the immutable float64 Plan."""
        keys = sorted({k for r in rows for k in r})
        rows[:] = [{k: r.get(k, 0.0) for k in keys} for r in rows]
        coef = {k: torch.tensor([r.get(k, 0.0) for r in rows], dtype=torch.float64) for k in keys}
        return Plan(torch.tensor(ts, dtype=torch.float64), coef)

    def compiled(self, process, ref: torch.Tensor) -> tuple[Plan, list[dict[str, float]], dict[str, list]]:
        """The float64 plan, its rows as host floats and its stage times on ref's device (cached)."""
        dtype = ref.real.dtype if (ref.is_floating_point() or ref.is_complex()) else torch.float32
        key = (id(process), ref.device, dtype)
        cache = self.__dict__.setdefault("_compiled", {})
        if key not in cache:
            cache.clear()
            plan = self.build_plan(process)
            n = plan.num_steps
            rows = [{k: float(v[i]) for k, v in plan.coef.items()} for i in range(n)]
            times = {k: list(v.to(device=ref.device, dtype=dtype).unbind(0))
                     for k, v in plan.coef.items() if k.startswith("t_")}
            cache[key] = (plan, rows, times)
        return cache[key]

    def plan(self, process, x):  # the StepSampler contract: the float64 plan moved to x
        plan, _, _ = self.compiled(process, x)
        return plan.to(x.device, x.real.dtype if x.is_complex() else x.dtype)

    def init_carry(self, plan: Plan, x: Any) -> Any:  # not used: see sample()
        return None

    # -- loop ---------------------------------------------------------------------------------
    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        plan, rows, times = self.compiled(process, x)
        y = endpoint(process, cond, x)
        if self.config.teleport > 0.0:
            x = teleport_state(x, process, denoiser.buffers,
                               float(process.t_max), float(plan.t[0]), y)
        carry = Carry(rows, times, y, x.shape[0])
        tracker = FiniteTracker(x.device)  # one reduction per step, checked once at the end
        for i in range(plan.num_steps):
            x, carry, pred = self.step(x, i, plan, denoiser, cond, generator, carry)
            tracker.update(x, i)
            if callback is not None:
                out = callback({"i": i, "t": plan.t[i + 1], "x": x, "prediction": pred, "generator": generator})
                if out is not None:
                    x = out
        tracker.check(type(self).__name__)
        return x

    def noise(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Fresh standard normal noise, batch-invariant with per-sample generators."""
        return randn_like(x, generator)


def phi1(h: float) -> float:
    """1 - e^{-h} (exact at h = inf)."""
    return -math.expm1(-h)
