"""Interpolant paths x_t = a(t) x0 + c(t) eps on t in [0, 1] (data at t = 0, noise at t = 1).

Each path gives a, c, their time derivatives a', c' (closed form) and the half log-SNR
lambda(t) = log(a / c) with its inverse, so the Gaussian solvers can place their grids
without bisection:

* ``linear`` (rectified flow, Liu et al. 2022; Lipman et al. 2022 with sigma_min = 0):
  a = 1 - t, c = t, a' = -1, c' = 1; lambda = log((1 - t) / t), t = sigmoid(-lambda).
* ``cosine`` (trigonometric interpolant, Albergo & Vanden-Eijnden 2023; the "cosine" schedule
  of Nichol & Dhariwal without its offset): a = cos(pi t / 2), c = sin(pi t / 2);
  lambda = log cot(pi t / 2), t = (2 / pi) atan(e^{-lambda}).
* ``vp``: the variance-preserving path of the score SDE written as an interpolant, a = m(t),
  c = sqrt(1 - m^2), log m = -t^2 (b1 - b0) / 4 - t b0 / 2; the coefficients are those of the
  score-SDE plugin's ``vp`` process (delegated to it, not re-derived here). Unlike the other two
  it does not reach pure noise: a(1) = e^{-(b0 + b1) / 4} (0.0066 for 0.1 -> 20).

The velocity of a path is u = a' x0 + c' eps; with a c' - c a' != 0 the pair (x_t, u) gives x0
and eps back exactly (see :mod:`.velocity`). For ``linear`` a c' - c a' = 1 everywhere.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class Path(ABC):
    """a(t), c(t), a'(t), c'(t) and lambda(t) = log(a / c) of one interpolant."""

    #: whether a(1) = 0 (the path ends in pure noise)
    reaches_noise: bool = True

    @abstractmethod
    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a(t), c(t))."""

    @abstractmethod
    def derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a'(t), c'(t))."""

    @abstractmethod
    def half_log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = log(a(t) / c(t)), decreasing in t."""

    @abstractmethod
    def t_of_half_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`half_log_snr`."""


class Linear(Path):
    """a = 1 - t, c = t (rectified flow / conditional OT path)."""

    def coefficients(self, t):
        return 1 - t, t

    def derivatives(self, t):
        return -torch.ones_like(t), torch.ones_like(t)

    def half_log_snr(self, t):
        return torch.log1p(-t) - torch.log(t)

    def t_of_half_log_snr(self, lam):
        return torch.sigmoid(-lam)


class Cosine(Path):
    """a = cos(pi t / 2), c = sin(pi t / 2) (trigonometric interpolant)."""

    def coefficients(self, t):
        ang = 0.5 * math.pi * t
        return torch.cos(ang), torch.sin(ang)

    def derivatives(self, t):
        ang = 0.5 * math.pi * t
        return -0.5 * math.pi * torch.sin(ang), 0.5 * math.pi * torch.cos(ang)

    def half_log_snr(self, t):
        return -torch.log(torch.tan(0.5 * math.pi * t))

    def t_of_half_log_snr(self, lam):
        return (2 / math.pi) * torch.atan(torch.exp(-lam))


class VPPath(Path):
    """The VP SDE's marginal path (coefficients from the score-SDE plugin's ``vp`` process)."""

    reaches_noise = False

    def __init__(self, beta_min: float, beta_max: float):
        from diffusekit_sde.processes import VP

        self.vp = VP(beta_min=beta_min, beta_max=beta_max)

    def coefficients(self, t):
        a, _, c = self.vp.coefficients(t)
        return a, c

    def derivatives(self, t):
        da, _, dc = self.vp.coefficient_derivatives(t)
        return da, dc

    def half_log_snr(self, t):
        return 0.5 * self.vp.log_snr(t)

    def t_of_half_log_snr(self, lam):
        return self.vp.t_from_log_snr(2 * lam)


def make_path(name: str, beta_min: float = 0.1, beta_max: float = 20.0) -> Path:
    if name == "linear":
        return Linear()
    if name == "cosine":
        return Cosine()
    if name == "vp":
        return VPPath(beta_min, beta_max)
    raise ValueError(f"unknown path {name!r}; use 'linear', 'cosine' or 'vp'")
