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
process's t_min. Everything is folded into per-step host coefficients on x itself.
"""

from __future__ import annotations

import math

from pydantic import Field

from .base import Carry, GaussianSolver, SolverConfig, combine, eval_point
from .gaussian import point, t_of_sigma


class EDMConfig(SolverConfig):
    steps: int = Field(18, ge=1, le=100_000, description="sigma intervals (the last one to sigma = 0 if any)")
    schedule: str | dict = Field("karras", description="time grid (EDM: Karras rho = 7 on sigma~)")
    S_churn: float = Field(0.0, ge=0.0, description="total churn (EDM Alg. 2); 0 = deterministic ODE")
    S_tmin: float = Field(0.0, ge=0.0, description="churn only where sigma~ >= S_tmin")
    S_tmax: float = Field(math.inf, ge=0.0, description="churn only where sigma~ <= S_tmax")
    S_noise: float = Field(1.0, gt=0.0, description="noise inflation of the churn (EDM: 1.003 on ImageNet)")


class _EDMSampler(GaussianSolver):
    """Shared plan of the EDM Euler / Heun samplers."""

    Config = EDMConfig
    second_order = False

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.S_churn > 0

    def expected_nfe(self) -> int:
        n = self.config.steps
        return 2 * n - 1 if self.second_order else n

    def build_plan(self, process):
        cfg = self.config
        ts = self.grid(process, cfg.steps)
        pts = self.points(process, ts)
        n = len(ts) - 1
        rows = []
        for i in range(n):
            p, q = pts[i], pts[i + 1]
            s_i, s_next = p.sigma, q.sigma
            gamma = min(cfg.S_churn / n, math.sqrt(2) - 1) if cfg.S_tmin <= s_i <= cfg.S_tmax else 0.0
            if gamma > 0:
                s_hat = s_i * (1 + gamma)
                ph = point(process, t_of_sigma(process, s_hat))
            else:
                s_hat, ph = s_i, p
            row = {"churn": float(gamma > 0)}
            eval_point(row, "hat", ph)
            eval_point(row, "next", q)
            # x_hat = a_h (x~_i + n xi) + b_h y,  n = sqrt(s_hat^2 - s_i^2) S_noise
            row["h_cx"] = ph.a / p.a
            row["h_cy"] = ph.b - row["h_cx"] * p.b
            row["h_cn"] = ph.a * math.sqrt(max(s_hat ** 2 - s_i ** 2, 0.0)) * cfg.S_noise
            # Euler: x' = a_q (r x^ + (1 - r) D0) + b_q y, r = s_next / s_hat
            r = s_next / s_hat
            row["e_cx"] = q.a * r / ph.a
            row["e_cy"] = q.b - row["e_cx"] * ph.b
            row["e_d0"] = q.a * (1 - r)
            heun = self.second_order and i < n - 1
            row["heun"] = float(heun)
            if heun:  # x~_{i+1} = x^ + D/2 ((x^ - D0)/s_hat + (x~' - D1)/s_next), D = s_next - s_hat
                dlt = s_next - s_hat
                w_hat, w_prime = 1 + dlt / (2 * s_hat), dlt / (2 * s_next)
                row["c_xh"] = q.a * w_hat / ph.a
                row["c_xp"] = w_prime
                row["c_d0"] = -q.a * dlt / (2 * s_hat)
                row["c_d1"] = -q.a * dlt / (2 * s_next)
                row["c_y"] = q.b - row["c_xh"] * ph.b - w_prime * q.b
            rows.append(row)
        return self.make_plan(ts, rows)

    def step(self, x, i, plan, denoiser, cond, generator, carry: Carry):
        row, y = carry.rows[i], carry.y
        if row["churn"]:  # host-side plan value, not a tensor: no sync
            x = combine(x, row, [], y, "h_cx", "h_cy").add(self.noise(x, generator), alpha=row["h_cn"])
        pred, d0 = carry.evaluate(denoiser, x, i, "hat", cond)
        x_e = combine(x, row, [("e_d0", d0)], y, "e_cx", "e_cy")
        if not row["heun"]:
            return x_e, carry, pred
        pred1, d1 = carry.evaluate(denoiser, x_e, i, "next", cond)
        out = x * row["c_xh"]
        out = out.add(x_e, alpha=row["c_xp"]).add(d0, alpha=row["c_d0"]).add(d1, alpha=row["c_d1"])
        if y is not None:
            out = out.add(y, alpha=row["c_y"])
        return out, carry, pred1


class EDMHeun(_EDMSampler):
    """EDM Heun (2nd order, Karras et al. 2022 Alg. 2); Euler on the last step: NFE 2N - 1."""

    second_order = True


class EDMEuler(_EDMSampler):
    """EDM Euler (1st order) with optional churn; NFE N."""
