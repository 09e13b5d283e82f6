"""DEIS (Zhang & Chen 2022, "Fast Sampling of Diffusion Models with Exponential Integrator"),
the time-polynomial multistep variant tAB-DEIS (eq. 15), noise prediction.

In the scaled coordinates x~ = z / alpha, sigma~ = sigma / alpha (z = x - b y) the
probability-flow ODE is dx~ = eps_hat dsigma~ (the exponential-integrator form, DEIS eq. 11 with
Psi = alpha_t / alpha_s), so a step s -> t is exactly

    x~_t = x~_s + int_s^t eps_hat(tau) dsigma~(tau).

tAB-DEIS extrapolates eps_hat by the Lagrange polynomial l_j through the last k evaluation
times in t (not lambda) and integrates it exactly against dsigma~:
x~_t = x~_s + sum_j C_j eps_{s_j}, C_j = int_s^t l_j(tau) (dsigma~/dtau) dtau, computed once per
step in float64 by 24-point Gauss-Legendre quadrature (exact for the polynomial part; dsigma~/dt
from the process's closed-form coefficient derivatives). On z: z_t = (alpha_t / alpha_s) z_s +
alpha_t sum_j C_j eps_j. Warm-up with lower orders, ``lower_order_final`` as DPM-Solver, and a
first-order step to sigma = 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from diffusekit.process import AdditiveGaussian

from .base import GaussianSolver, MultistepStep, SolverConfig, multistep_step


class DEISConfig(SolverConfig):
    order: Literal[1, 2, 3] = Field(3, description="tAB order: polynomial extrapolation of eps in t")
    lower_order_final: bool = Field(True, description="lower orders on the last steps when steps < 15")


def _dsigma_dt(process, t: torch.Tensor) -> torch.Tensor:
    """d sigma~ / dt with sigma~ = c / a (closed-form derivatives when the process has them)."""
    if isinstance(process, AdditiveGaussian):
        a, _, c = process.coefficients(t)
        da, _, dc = process.coefficient_derivatives(t)
        return (dc * a - c * da) / (a * a)
    h = 1e-6 * torch.clamp(t.abs(), min=1e-3)
    return (process.sigma(t + h) - process.sigma(t - h)) / (2 * h)


def deis_step(process, ts: list[float], i: int, p, q, order: int) -> MultistepStep:
    """tAB-DEIS coefficients (eq. 15) of step i (p -> q) with the last ``order`` times as knots."""
    nodes, weights = np.polynomial.legendre.leggauss(24)
    knots = [ts[i - j] for j in range(order)]
    tau = torch.tensor(0.5 * (q.t - p.t) * nodes + 0.5 * (q.t + p.t), dtype=torch.float64)
    w = torch.tensor(0.5 * (q.t - p.t) * weights, dtype=torch.float64)
    ds = _dsigma_dt(process, tau)
    d = [0.0, 0.0, 0.0]
    for j in range(order):
        basis = torch.ones_like(tau)
        for m in range(order):
            if m != j:
                basis = basis * (tau - knots[m]) / (knots[j] - knots[m])
        d[j] = q.a * float((w * basis * ds).sum())  # z = a x~: x~_t = x~_s + sum C_j eps_j
    return MultistepStep(t=p.t, a=p.a, b=p.b, c=p.c, wz=q.a / p.a, d0=d[0], bq=q.b, d1=d[1], d2=d[2], cn=0.0)


class DEIS(GaussianSolver):
    """DEIS tAB (Zhang & Chen 2022): multistep, noise prediction, exact integration of a Lagrange
    polynomial in t against dsigma~."""

    Config = DEISConfig
    kind = "eps"
    history = 2

    def coefficients_type(self):
        return MultistepStep

    def rows(self, process):
        ts, pts, orders = self.multistep_grid(process, self.config.order, self.config.lower_order_final)
        return ts, [deis_step(process, ts, i, pts[i], pts[i + 1], orders[i]) for i in range(len(orders))]

    def step_row(self, x, row, model, generator, carry):
        return multistep_step(self, x, row, model, generator, carry, "eps")
