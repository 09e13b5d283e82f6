"""Gaussian coordinates shared by every solver in this plugin.

Every process these solvers accept is written as x_t = a(t) x0 + b(t) y + c(t) eps
(:class:`~diffusekit.process.AdditiveGaussian`), or as x_t = x0 + sigma(t) n for EDM-style
:class:`~diffusekit.process.DenoisingODE` processes (a = 1, b = 0, c = sigma).
The solvers work on z = x - b y = a x0 + c eps with

* the scaled state x~ = z / a and noise level sigma~ = c / a (EDM's "scaled" form, Karras et
  al. 2022 eq. 4), in which the probability-flow ODE is dx~/dsigma~ = (x~ - x0_hat) / sigma~;
* the half log-SNR lambda = log(a / c) = -log sigma~ (DPM-Solver, Lu et al. 2022a, eq. 3.2).

All of this is evaluated in float64 on the host when a plan is built; nothing here runs
inside a sampling step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from diffusekit.process import AdditiveGaussian, SigmaParameterized


@dataclass(frozen=True)
class Point:
    """(a, b, c) of one time in float64, with the derived sigma~ and lambda."""

    t: float
    a: float
    b: float
    c: float

    @property
    def sigma(self) -> float:
        """sigma~ = c / a."""
        return self.c / self.a

    @property
    def lam(self) -> float:
        """lambda = log(a / c) (+inf at c = 0)."""
        return math.inf if self.c == 0.0 else math.log(self.a) - math.log(self.c)


def point(process, t: float) -> Point:
    """(a, b, c) of ``process`` at time ``t`` in float64."""
    tt = torch.tensor([float(t)], dtype=torch.float64)
    if isinstance(process, AdditiveGaussian):
        a, b, c = (float(v.reshape(-1)[0]) for v in process.coefficients(tt))
    else:
        a, b, c = 1.0, 0.0, float(process.sigma(tt).reshape(-1)[0])
    return Point(float(t), a, b, abs(c))


def t_of_lambda(process, lam: float) -> float:
    """Time whose half log-SNR is ``lam`` (inverse of :attr:`Point.lam`)."""
    if isinstance(process, AdditiveGaussian):
        return float(process.t_from_log_snr(torch.tensor([2.0 * lam], dtype=torch.float64))[0])
    return float(process.t_of_sigma(torch.tensor([math.exp(-lam)], dtype=torch.float64))[0])


def t_of_sigma(process, sigma: float) -> float:
    """Time whose scaled noise level sigma~ = c / a is ``sigma``."""
    if isinstance(process, SigmaParameterized) and not isinstance(process, AdditiveGaussian):
        return float(process.t_of_sigma(torch.tensor([sigma], dtype=torch.float64))[0])
    return t_of_lambda(process, -math.log(sigma))


def zero_noise_time(process) -> Optional[float]:
    """The time at which c = 0 (sigma = 0) if the process reaches it, else None.

    EDM-style processes (t = sigma) reach it at t = 0; VE never does (sigma(t) > 0 for all t).
    """
    if isinstance(process, SigmaParameterized):
        try:
            t0 = float(process.t_of_sigma(torch.zeros(1, dtype=torch.float64))[0])
        except (ValueError, RuntimeError):
            return None
        if math.isfinite(t0) and point(process, t0).c == 0.0:
            return t0
        return None
    if isinstance(process, AdditiveGaussian) and point(process, 0.0).c == 0.0 and point(process, 0.0).a > 0:
        return 0.0
    return None


def ends_at_zero_by_default(process) -> bool:
    """EDM-style sigma processes that reach sigma = 0 (EDM, PFGM++: t = sigma) integrate to it.

    VE is SigmaParameterized too but sigma(t) > 0 for every t, so it ends at its t_min.
    """
    return isinstance(process, SigmaParameterized) and zero_noise_time(process) is not None


def endpoint(process, cond: Any, x: torch.Tensor) -> Optional[torch.Tensor]:
    """The condition endpoint y of an AdditiveGaussian process (None when b = 0)."""
    if isinstance(process, AdditiveGaussian):
        return process.endpoint(cond, x)
    return None
