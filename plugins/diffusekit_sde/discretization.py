"""Per-step coefficients of the discretised forward SDE, shared by the reverse-SDE samplers.

A forward step from t_{k+1} (smaller time) to t_k (larger time) of a linear SDE is written
x_k = r_k x_{k+1} + G_k z (Song et al. 2021, sde_lib.py ``discretize``: f = (r - 1) x, G).

* ``"transition"`` (default): the exact Gaussian transition of the process,
  r = a(t_k) / a(t_{k+1}), G^2 = c(t_k)^2 - r^2 c(t_{k+1})^2 (so that c_k^2 = r^2 c_{k+1}^2 + G^2).
  For VP this is the DDPM discretisation with beta_k = 1 - r^2 (r = sqrt(1 - beta_k),
  G = sqrt(beta_k)); for VE it is SMLD's G = sqrt(sigma_k^2 - sigma_{k+1}^2). On the discrete
  ``ddpm`` / ``smld`` processes, whose coefficients are the paper's tables, it reproduces the
  paper's beta_i = linspace(b_min/N, b_max/N, N) and sigma_i exactly. Unlike the first-order
  form it never makes beta_k > 1 on coarse grids.
* ``"euler"``: the first-order form f dt, g sqrt(dt) (the paper's default ``discretize``),
  r = 1 + k(t_k) |dt| with f(x, t) = k(t) x, G = g(t_k) sqrt(|dt|).
"""

from __future__ import annotations

from typing import Literal

import torch

from diffusekit.errors import CompatibilityError
from diffusekit.process import SDE, AdditiveGaussian, ForwardProcess

Discretization = Literal["transition", "euler"]


def time_grid(process: ForwardProcess, steps: int, schedule: str = "uniform") -> torch.Tensor:
    """Decreasing float64 grid of ``steps + 1`` times from t_max to t_min (registry schedule)."""
    from diffusekit.api import create

    return create("schedule", schedule, loc="sampler.schedule").times(process, steps).to(torch.float64)


def linear_drift_coefficient(process: SDE, t: torch.Tensor) -> torch.Tensor:
    """k(t) with f(x, t) = k(t) x, read off the drift at x = 1 (linear SDEs only)."""
    ones = torch.ones(t.shape[0], 1, dtype=torch.float64)
    return process.drift(ones, t)[:, 0]


def step_coefficients(process: ForwardProcess, t: torch.Tensor, how: Discretization = "transition") -> dict[str, torch.Tensor]:
    """Coefficients for the steps t[k] -> t[k+1] (k = 0..len(t)-2), all float64 of shape (steps,).

    Returns ``r`` and ``G2`` (forward step x_k = r x_{k+1} + G z) plus the marginal stds
    ``c_from`` = c(t_k) and ``c_to`` = c(t_{k+1}) and ``a_from`` / ``a_to``.
    """
    if not isinstance(process, AdditiveGaussian):
        raise CompatibilityError(f"{type(process).__name__} is not AdditiveGaussian; reverse-SDE steps need "
                                 "closed-form marginals a(t), c(t)")
    t = t.to(torch.float64)
    a, _, c = (v.to(torch.float64) for v in process.coefficients(t))
    out = {"a_from": a[:-1], "a_to": a[1:], "c_from": c[:-1], "c_to": c[1:]}
    if how == "transition":
        r = a[:-1] / a[1:]
        g2 = (c[:-1] ** 2 - r ** 2 * c[1:] ** 2).clamp_min(0.0)
    elif how == "euler":
        if not isinstance(process, SDE):
            raise CompatibilityError(f"discretization='euler' needs an SDE process, not {type(process).__name__}")
        dt = t[:-1] - t[1:]
        r = 1.0 + linear_drift_coefficient(process, t[:-1]) * dt
        g2 = process.diffusion(t[:-1]).to(torch.float64) ** 2 * dt
    else:  # pragma: no cover - guarded by the pydantic Literal
        raise ValueError(how)
    out["r"], out["G2"] = r, g2
    return out
