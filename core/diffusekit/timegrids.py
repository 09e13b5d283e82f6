"""Generic time grids (registered by the core's own built-in plugin).

All grids return float64 times, decreasing from t_max to the end time (``t_end`` or the
process's t_min). Grids defined in sigma or log-SNR are mapped back to time through the
process (``SigmaParameterized.t_of_sigma`` or ``AdditiveGaussian.t_from_log_snr``).
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from .config import ComponentConfig
from .errors import CompatibilityError, ConfigError
from .process import AdditiveGaussian, ForwardProcess, SigmaParameterized
from .sampler import TimeGrid


class GridConfig(ComponentConfig):
    t_end: Optional[float] = Field(None, ge=0.0, description="end time (default: the process's t_min)")
    t_start: Optional[float] = Field(None, gt=0.0, description="start time (default: the process's t_max); "
                                     "solvers set it when they start mid-trajectory (teleportation)")


def _ends(process: ForwardProcess, t_end: Optional[float], t_start: Optional[float] = None) -> tuple[float, float]:
    hi = float(process.t_max if t_start is None else t_start)
    lo = float(process.t_min if t_end is None else t_end)
    if not hi > lo:
        raise ConfigError(f"time grid start {hi} must exceed its end {lo}; check t_start / t_end",
                          loc="schedule.t_start")
    return hi, lo


def sigma_of(process, t: torch.Tensor) -> torch.Tensor:
    """Noise-to-signal ratio c/a (or the process's sigma) as a function of time."""
    if isinstance(process, SigmaParameterized):
        return process.sigma(t)
    if isinstance(process, AdditiveGaussian):
        return torch.exp(-0.5 * process.log_snr(t))
    raise CompatibilityError(f"{type(process).__name__} defines no noise level (needs AdditiveGaussian or SigmaParameterized)")


def t_of_sigma(process, sigma: torch.Tensor) -> torch.Tensor:
    if isinstance(process, SigmaParameterized):
        return process.t_of_sigma(sigma)
    return process.t_from_log_snr(-2 * torch.log(sigma))


def log_snr_of(process, t: torch.Tensor) -> torch.Tensor:
    """lambda(t) = log(a^2 / c^2), or -2 log sigma(t) for sigma-only (EDM / PFGM++) processes."""
    if isinstance(process, AdditiveGaussian):
        return process.log_snr(t)
    return -2 * torch.log(sigma_of(process, t))


def t_of_log_snr(process, lam: torch.Tensor) -> torch.Tensor:
    if isinstance(process, AdditiveGaussian):
        return process.t_from_log_snr(lam)
    return t_of_sigma(process, torch.exp(-0.5 * lam))


class Uniform(TimeGrid):
    """Uniform in t: t_i = T + i/N (t_end - T)."""

    Config = GridConfig

    def times(self, process, steps):
        hi, lo = _ends(process, self.config.t_end, self.config.t_start)
        return torch.linspace(hi, lo, steps + 1, dtype=torch.float64)


class Quadratic(TimeGrid):
    """Quadratic in t (denser near the data end), as in DDIM's 'quad' skip."""

    Config = GridConfig

    def times(self, process, steps):
        hi, lo = _ends(process, self.config.t_end, self.config.t_start)
        u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        return lo + (hi - lo) * u ** 2


class LogSNR(TimeGrid):
    """Uniform in log-SNR lambda = log(a^2/c^2) (DPM-Solver's recommended grid; -2 log sigma for
    sigma-only processes)."""

    Config = GridConfig

    def times(self, process, steps):
        hi, lo = _ends(process, self.config.t_end, self.config.t_start)
        lam = torch.linspace(float(log_snr_of(process, torch.tensor(hi, dtype=torch.float64))),
                             float(log_snr_of(process, torch.tensor(lo, dtype=torch.float64))), steps + 1,
                             dtype=torch.float64)
        t = t_of_log_snr(process, lam)
        t[0], t[-1] = hi, lo
        return t


class KarrasConfig(GridConfig):
    rho: float = Field(7.0, gt=0, description="Karras et al. (2022) eq. 5 exponent")


class Karras(TimeGrid):
    """sigma_i = (smax^(1/rho) + i/N (smin^(1/rho) - smax^(1/rho)))^rho (EDM eq. 5), mapped to t."""

    Config = KarrasConfig

    def times(self, process, steps):
        hi, lo = _ends(process, self.config.t_end, self.config.t_start)
        s_hi = sigma_of(process, torch.tensor(hi, dtype=torch.float64))
        s_lo = sigma_of(process, torch.tensor(lo, dtype=torch.float64))
        r = self.config.rho
        i = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        sig = (s_hi ** (1 / r) + i * (s_lo ** (1 / r) - s_hi ** (1 / r))) ** r
        t = t_of_sigma(process, sig)
        t[0], t[-1] = hi, lo
        return t


class ExplicitConfig(ComponentConfig):
    times: list[float] = Field(..., min_length=2, description="decreasing times, first = start")


class Explicit(TimeGrid):
    """A user-given list of times (its length fixes steps + 1)."""

    Config = ExplicitConfig

    def times(self, process, steps):
        t = torch.tensor(self.config.times, dtype=torch.float64)
        if len(t) != steps + 1:
            raise ConfigError(f"explicit grid has {len(t)} times but the sampler takes {steps} steps "
                              f"(needs {steps + 1}); set steps={len(t) - 1}", loc="schedule.times")
        if not bool((t[1:] < t[:-1]).all()):
            raise ConfigError("explicit grid must be strictly decreasing", loc="schedule.times")
        return t
