"""Masking schedules alpha(t): the probability that a token is still unmasked at time t.

Time runs from t = 0 (clean data) to t = 1 (the prior). Every schedule provides alpha(t), its
derivative alpha'(t) and the inverse t = alpha^{-1}(a) in closed form (the first-hitting
sampler needs the inverse; docs/plugins/masked.md):

* ``linear``      alpha = 1 - t                      (MD4; NELBO weight -alpha'/(1 - alpha) = 1/t)
* ``cosine``      alpha = cos(pi t / 2)               (MD4, MaskGIT)
* ``polynomial``  alpha = 1 - t^w                     (MD4; w = ``exponent``)
* ``log-linear``  alpha = 1 - (1 - eps) t             (MDLM, eps = 1e-3; alpha(1) = eps)

All maths is done in the dtype of ``t`` (the samplers pass float64).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

ScheduleName = Literal["linear", "cosine", "polynomial", "log-linear"]
SCHEDULES: tuple[str, ...] = ("linear", "cosine", "polynomial", "log-linear")


class MaskSchedule:
    """alpha(t), alpha'(t) and alpha^{-1} for one of :data:`SCHEDULES`."""

    def __init__(self, name: str = "linear", exponent: float = 1.0, eps: float = 1e-3):
        if name not in SCHEDULES:
            raise ValueError(f"schedule: unknown {name!r}; choose one of {list(SCHEDULES)}")
        self.name, self.exponent, self.eps = name, float(exponent), float(eps)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        if self.name == "linear":
            return 1 - t
        if self.name == "cosine":
            return torch.cos(0.5 * math.pi * t)
        if self.name == "polynomial":
            return 1 - t ** self.exponent
        return 1 - (1 - self.eps) * t

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        if self.name == "linear":
            return -torch.ones_like(t)
        if self.name == "cosine":
            return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)
        if self.name == "polynomial":
            return -self.exponent * t ** (self.exponent - 1)
        return torch.full_like(t, -(1 - self.eps))

    def inverse(self, a: torch.Tensor) -> torch.Tensor:
        """t with alpha(t) = a (a clamped to the schedule's range)."""
        if self.name == "linear":
            return (1 - a).clamp(0, 1)
        if self.name == "cosine":
            return torch.arccos(a.clamp(0, 1)) * (2 / math.pi)
        if self.name == "polynomial":
            return (1 - a).clamp(0, 1) ** (1 / self.exponent)
        return ((1 - a) / (1 - self.eps)).clamp(0, 1)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """NELBO weight -alpha'(t) / (1 - alpha(t)) (docs/plugins/masked.md); 1/t for linear."""
        if self.name in ("linear", "log-linear"):
            return 1 / t  # exact simplification, no cancellation near t = 0
        if self.name == "polynomial":
            return self.exponent / t
        return -self.dalpha(t) / (1 - self.alpha(t))
