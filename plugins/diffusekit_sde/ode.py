"""Probability-flow ODE sampler (Song et al. 2021, eq. 13): adaptive Dormand-Prince RK45
through torchdiffeq (rtol = atol = 1e-5, as the reference code's scipy RK45) or fixed-step
Euler / Heun / RK4 on a registered time grid.

For an AdditiveGaussian process x_t = a x0 + b y + c eps the velocity is
dx/dt = a' x0_hat + b' y + c' eps_hat, which equals f - g^2 score / 2 for the linear SDEs and
needs only the denoiser's x0 / eps predictions. That velocity and the fixed-step Euler and Heun
updates are the flow plugin's (``velocity_of``, ``flow-euler``, ``flow-heun``: one copy of the
probability-flow Euler / Heun in t in the tree), run here on this sampler's registered grid;
RK4 (classical, four evaluations per step) is written here. NFE: euler n, heun 2n - 1 (Euler on
the last step), rk4 4n, rk45 adaptive (reported by the denoiser's counter). ``denoise_final``
replaces the result by x0_hat(x, t_min) (one extra evaluation).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.process import AdditiveGaussian, PinnedBridge
from diffusekit.sampler import FiniteTracker, Sampler, SamplerConfig
from diffusekit.state import real_dtype
from diffusekit_flow.samplers import FlowEuler, FlowHeun, FlowODEConfig
from diffusekit_flow.velocity import velocity_of


def pf_ode_velocity(denoiser, process, x, t, cond):
    """dx/dt of the probability-flow ODE at (x, t); t of shape (B,). Returns (velocity, prediction)."""
    pred = denoiser(x, t, cond)
    return velocity_of(pred), pred


def _schedule_times(schedule: str, process, steps: int) -> torch.Tensor:
    from diffusekit.api import create

    return create("schedule", schedule, loc="sampler.schedule").times(process, steps)


class _ScheduledConfig(FlowODEConfig):
    schedule: str = Field("uniform", description="registered time grid")


class _OnSchedule:
    """Mixin: a flow sampler on a registered time grid (the ``ode`` sampler's ``schedule``)
    instead of its own shifted uniform grid."""

    Config = _ScheduledConfig

    def grid(self, process) -> torch.Tensor:
        return _schedule_times(self.config.schedule, process, self.config.steps)


class _FlowEulerOnSchedule(_OnSchedule, FlowEuler):
    """``flow-euler`` on the ``ode`` sampler's grid."""


class _FlowHeunOnSchedule(_OnSchedule, FlowHeun):
    """``flow-heun`` on the ``ode`` sampler's grid."""


_FLOW_STEPPERS = {"euler": _FlowEulerOnSchedule, "heun": _FlowHeunOnSchedule}


class ODEConfig(SamplerConfig):
    steps: int = Field(100, ge=1, le=100_000, description="fixed-step methods: number of steps")
    method: Literal["rk45", "euler", "heun", "rk4"] = Field(
        "rk45", description="rk45: adaptive Dormand-Prince (torchdiffeq); others: fixed step")
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    schedule: str = Field("uniform", description="time grid for fixed-step methods")
    denoise_final: bool = Field(False, description="replace the result by x0_hat at t_min")


class ProbabilityFlowODE(Sampler):
    """Probability-flow ODE from t_max to t_min: adaptive RK45 (torchdiffeq) or fixed step."""

    Config = ODEConfig
    requires = (AdditiveGaussian,)
    #: the velocity uses eps_hat = (x - a x0 - b y) / c, undefined where a bridge is pinned
    excludes = (PinnedBridge,)

    def couples_batch(self) -> bool:
        return self.config.method == "rk45"  # one adaptive step size for the whole batch

    def expected_nfe(self):
        m = self.config.method
        if m == "rk45":
            return None
        return {"euler": 1, "heun": 2, "rk4": 4}[m] * self.config.steps - (1 if m == "heun" else 0)

    def _grid(self, process):
        return _schedule_times(self.config.schedule, process, self.config.steps)

    def _stepper(self):
        """The flow plugin's Euler / Heun sampler on this sampler's grid (built once)."""
        if "_flow_stepper" not in self.__dict__:
            cfg = self.config
            cls = _FLOW_STEPPERS[cfg.method]
            self._flow_stepper = cls(steps=cfg.steps, schedule=cfg.schedule)
        return self._flow_stepper

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        cfg = self.config
        tracker = FiniteTracker(x.device)
        n = x.shape[0]
        if cfg.method == "rk45":
            from torchdiffeq import odeint

            work = x.dtype

            lo, hi = float(process.t_min), float(process.t_max)

            def f(t, y):  # integrate in float64 (as scipy's RK45 in the reference code)
                # the step-size probe may evaluate outside [t_min, t_max]: clamp to the domain
                tt = t.clamp(lo, hi).to(work).expand(n)
                v = pf_ode_velocity(denoiser, process, y.to(work), tt, cond)[0]
                return v.to(torch.float64)

            ts = torch.tensor([process.t_max, process.t_min], dtype=torch.float64, device=x.device)
            x = odeint(f, x.to(torch.float64), ts, rtol=cfg.rtol, atol=cfg.atol, method="dopri5")[-1].to(work)
            tracker.update(x, 0)
            if callback is not None:
                out = callback({"i": 0, "t": ts[-1], "x": x, "prediction": None, "generator": generator})
                x = x if out is None else out
        elif cfg.method in _FLOW_STEPPERS:
            x = self._stepper().sample(denoiser, process, x, cond, generator, callback)
        else:  # classical RK4; times in the state's real dtype (complex states keep real times)
            ts = self._grid(process).to(device=x.device, dtype=real_dtype(x))
            for i in range(len(ts) - 1):
                t0, t1 = ts[i].expand(n), ts[i + 1].expand(n)
                h = ts[i + 1] - ts[i]
                tm = (ts[i] + h / 2).expand(n)
                k1, pred = pf_ode_velocity(denoiser, process, x, t0, cond)
                k2, _ = pf_ode_velocity(denoiser, process, x + h / 2 * k1, tm, cond)
                k3, _ = pf_ode_velocity(denoiser, process, x + h / 2 * k2, tm, cond)
                k4, _ = pf_ode_velocity(denoiser, process, x + h * k3, t1, cond)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                tracker.update(x, i)
                if callback is not None:
                    out = callback({"i": i, "t": ts[i + 1], "x": x, "prediction": pred, "generator": generator})
                    x = x if out is None else out
        if cfg.denoise_final:
            x = denoiser(x, torch.full((n,), process.t_min, dtype=real_dtype(x), device=x.device), cond).x0
        tracker.update(x, max(cfg.steps - 1, 0))
        tracker.check("ode sampler")
        return x
