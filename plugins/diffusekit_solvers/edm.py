"""EDM samplers (Karras et al. 2022, Algorithm 2): Heun and Euler with optional churn.

In the scaled coordinates x~ = (x - b y) / a, sigma~ = c / a the probability-flow ODE is
dx~/dsigma~ = (x~ - D(x~, sigma~)) / sigma~ (EDM eq. 4 with s = a). For a = 1, b = 0 (VE,
EDM, PFGM++ with r = sigma sqrt(D)) this is literally the EDM ODE. Step i from sigma_i to
sigma_{i+1}:

1. churn (EDM eq. 6 / Alg. 2 lines 4-6): gamma_i = min(S_churn / N, sqrt(2) - 1) if
   S_tmin <= sigma_i <= S_tmax else 0; sigma^ = sigma_i (1 + gamma_i);
   x^ = x~_i + sqrt(sigma^2 - sigma_i^2) S_noise xi.
2. Euler: d0 = (x^ - D(x^, sigma^)) / sigma^; x~' = x^ + (sigma_{i+1} - sigma^) d0.
3. Heun (second order, not on the last step): d1 = (x~' - D(x~', sigma_{i+1})) / sigma_{i+1};
   x~_{i+1} = x^ + (sigma_{i+1} - sigma^) (d0 + d1) / 2.

Final step: always the Euler step (2), so Heun with N steps costs 2N - 1 network evaluations.
When the grid ends at sigma = 0 (default for EDM-style sigma processes) the Euler step to
sigma = 0 is x~ = D(x^, sigma^): the denoised estimate, never NaN/Inf. VP / VE end at the
process's t_min. Everything is folded into per-step coefficients on x itself (:class:`EDMStep`);
whether a step takes Heun's second evaluation is a static field, so an exported Scan runs the
N - 1 Heun steps and the final Euler step is one unrolled step after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffusekit.sampler import Coefficients
from pydantic import Field

from .base import GaussianSolver, SolverConfig, data_prediction, lincomb
from .gaussian import point, t_of_sigma


class EDMConfig(SolverConfig):
    steps: int = Field(18, ge=1, le=100_000, description="sigma intervals (the last one to sigma = 0 if any)")
    schedule: str | dict = Field("karras", description="time grid (EDM: Karras rho = 7 on sigma~)")
    S_churn: float = Field(0.0, ge=0.0, description="total churn (EDM Alg. 2); 0 = deterministic ODE")
    S_tmin: float = Field(0.0, ge=0.0, description="churn only where sigma~ >= S_tmin")
    S_tmax: float = Field(math.inf, ge=0.0, description="churn only where sigma~ <= S_tmax")
    S_noise: float = Field(1.0, gt=0.0, description="noise inflation of the churn (EDM: 1.003 on ImageNet)")


@dataclass(frozen=True)
class EDMStep(Coefficients):
    """Churn x^ = h_cx x + h_cy y + h_cn xi (at (t, a, b, c)); Euler x' = e_cx x^ + e_cy y + e_d0 D0;
    Heun (static ``heun``) x_{i+1} = c_xh x^ + c_xp x' + c_d0 D0 + c_d1 D1 + c_y y, D1 at
    (t1, a1, b1, c1)."""

    TIMES = ("t", "t1")
    STATIC = ("heun", "churn")
    heun: bool
    churn: bool
    t: float
    a: float
    b: float
    c: float
    t1: float
    a1: float
    b1: float
    c1: float
    h_cx: float
    h_cy: float
    h_cn: float
    e_cx: float
    e_cy: float
    e_d0: float
    c_xh: float
    c_xp: float
    c_d0: float
    c_d1: float
    c_y: float


def edm_step(process, p, q, n: int, cfg, second_order: bool, last: bool) -> EDMStep:
    """EDM Algorithm 2 coefficients of the step p -> q (n steps in all)."""
    s_i, s_next = p.sigma, q.sigma
    gamma = min(cfg.S_churn / n, math.sqrt(2) - 1) if cfg.S_tmin <= s_i <= cfg.S_tmax else 0.0
    if gamma > 0:
        s_hat = s_i * (1 + gamma)
        ph = point(process, t_of_sigma(process, s_hat))
    else:
        s_hat, ph = s_i, p
    # x_hat = a_h (x~_i + n xi) + b_h y,  n = sqrt(s_hat^2 - s_i^2) S_noise
    h_cx = ph.a / p.a
    h = dict(h_cx=h_cx, h_cy=ph.b - h_cx * p.b, h_cn=ph.a * math.sqrt(max(s_hat ** 2 - s_i ** 2, 0.0)) * cfg.S_noise)
    # Euler: x' = a_q (r x^ + (1 - r) D0) + b_q y, r = s_next / s_hat
    r = s_next / s_hat
    e_cx = q.a * r / ph.a
    e = dict(e_cx=e_cx, e_cy=q.b - e_cx * ph.b, e_d0=q.a * (1 - r))
    heun = second_order and not last
    c = dict(c_xh=0.0, c_xp=0.0, c_d0=0.0, c_d1=0.0, c_y=0.0)
    if heun:  # x~_{i+1} = x^ + D/2 ((x^ - D0)/s_hat + (x~' - D1)/s_next), D = s_next - s_hat
        dlt = s_next - s_hat
        w_hat, w_prime = 1 + dlt / (2 * s_hat), dlt / (2 * s_next)
        c_xh = q.a * w_hat / ph.a
        c = dict(c_xh=c_xh, c_xp=w_prime, c_d0=-q.a * dlt / (2 * s_hat), c_d1=-q.a * dlt / (2 * s_next),
                 c_y=q.b - c_xh * ph.b - w_prime * q.b)
    return EDMStep(heun=heun, churn=gamma > 0, t=ph.t, a=ph.a, b=ph.b, c=ph.c, t1=q.t, a1=q.a, b1=q.b, c1=q.c,
                   **h, **e, **c)


class _EDMSampler(GaussianSolver):
    """Shared plan and step of the EDM Euler / Heun samplers."""

    Config = EDMConfig
    second_order = False
    #: the Euler / Heun updates are written on x (no separate re-noising term)
    renoise_eps = False

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.S_churn > 0

    def expected_nfe(self) -> int:
        n = self.config.steps
        return 2 * n - 1 if self.second_order else n

    def coefficients_type(self):
        return EDMStep

    def rows(self, process):
        cfg = self.config
        ts = self.grid(process, cfg.steps)
        pts = self.points(process, ts)
        n = len(ts) - 1
        return ts, [edm_step(process, pts[i], pts[i + 1], n, cfg, self.second_order, i == n - 1) for i in range(n)]

    def step_row(self, x, row: EDMStep, model, generator, carry):
        y = carry[0]
        if row.churn:  # static: only stochastic configurations churn
            x = lincomb((row.h_cx, x), (row.h_cy, y), (row.h_cn, self.noise(x, generator)))
        pred = model(x, row.t)
        d0 = data_prediction(pred, x, y, row.a, row.b, row.c)
        x_e = lincomb((row.e_cx, x), (row.e_d0, d0), (row.e_cy, y))
        if not row.heun:
            return x_e, carry, pred
        pred1 = model(x_e, row.t1)
        d1 = data_prediction(pred1, x_e, y, row.a1, row.b1, row.c1)
        return lincomb((row.c_xh, x), (row.c_xp, x_e), (row.c_d0, d0), (row.c_d1, d1), (row.c_y, y)), carry, pred1


class EDMHeun(_EDMSampler):
    """EDM Heun (2nd order, Karras et al. 2022 Alg. 2); Euler on the last step: NFE 2N - 1."""

    second_order = True


class EDMEuler(_EDMSampler):
    """EDM Euler (1st order) with optional churn; NFE N."""
