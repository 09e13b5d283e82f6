"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12; eta as in eq. 16).

On z = x - b y = alpha x0 + sigma eps (any alpha / sigma), a step s -> t with
h = lambda_t - lambda_s, lambda = log(alpha / sigma):

    z_t = alpha_t x0_hat + k eps_hat + s_eta xi,   s_eta = eta sigma_t sqrt(1 - e^{-2h}),
    k = sqrt(sigma_t^2 - s_eta^2)

(s_eta is eta times the std of q(x_t | x_s, x0), eq. 16). Written on the state,
eps_hat = (z_s - alpha_s x0_hat) / sigma_s, this is z_t = w z_s + (alpha_t - w alpha_s) x0_hat
+ s_eta xi with w = k / sigma_s; with eta = 0 it is the first-order exponential integrator of the
probability-flow ODE, z_t = (sigma_t / sigma_s) z_s + alpha_t (1 - e^{-h}) x0_hat (DPM-Solver++
eq. 8, DPM-Solver eq. 3.7). A prediction that re-noises (CFG++) replaces z_s by
alpha_s x0 + sigma_s eps from the prediction: then z_t = alpha_t x0 + k eps (+ s_eta xi), CFG++
Algorithm 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from .base import GaussianSolver, LinearStep, SolverConfig, data_prediction, lincomb, phi1, state


class DDIMConfig(SolverConfig):
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 = probability-flow ODE, 1 = ancestral")


@dataclass(frozen=True)
class DDIMStep(LinearStep):
    """z_t = wz z_s + d0 x0_hat + cn xi (eq. 12)."""

    cn: float


def ddim_step(p, q, eta: float) -> DDIMStep:
    """Coefficients of the DDIM step p -> q (float64 points with a, b, c, lambda)."""
    h = q.lam - p.lam
    s_eta = eta * q.c * math.sqrt(phi1(2 * h)) if q.c > 0 else 0.0
    wz = math.sqrt(max(q.c ** 2 - s_eta ** 2, 0.0)) / p.c
    return DDIMStep(t=p.t, a=p.a, b=p.b, c=p.c, wz=wz, d0=q.a - wz * p.a, bq=q.b, cn=s_eta)


class DDIM(GaussianSolver):
    """DDIM (Song et al. 2021a eq. 12) for any alpha / sigma; eta = 0 is the first-order
    exponential integrator of the PF-ODE."""

    Config = DDIMConfig

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.eta > 0

    def coefficients_type(self):
        return DDIMStep

    def rows(self, process):
        ts = self.grid(process, self.config.steps)
        pts = self.points(process, ts)
        return ts, [ddim_step(p, q, self.config.eta) for p, q in zip(pts[:-1], pts[1:])]

    def step_row(self, x, row: DDIMStep, model, generator, carry):
        y = carry[0]
        pred = model(x, row.t)
        x0 = data_prediction(pred, x, y, row.a, row.b, row.c)
        out = lincomb((row.wz, state(x, y, row, pred)), (row.d0, x0), (row.bq, y))
        if self.stochastic:
            out = out.add_(self.noise(x, generator), alpha=row.cn)
        return out, carry, pred
