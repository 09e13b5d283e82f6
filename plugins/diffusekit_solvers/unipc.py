"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework"), data prediction.

With z = alpha x0 + sigma eps, h = lambda_t - lambda_s, hh = -h, h phi_1 = e^{hh} - 1 and
B(h) = hh (``bh1``) or e^{hh} - 1 (``bh2``):

* UniP-p (predictor, Alg. 2 / eq. 8): z_t = (sigma_t / sigma_s) z_s - alpha_t h phi_1 m_s
  - alpha_t B(h) sum_k rho_k D_k, with D_k = (m_{s_k} - m_s) / r_k, r_k = (lambda_{s_k} -
  lambda_s) / h and rho solving R rho = b, R_ik = r_k^{i-1}, b_i = h phi_{i+1}(h) i! / B(h)
  (rho = 1/2 for p = 2).
* UniC-p (corrector, eq. 9): after the model is evaluated at the predicted z_t (that output
  m_t is needed by the next step anyway), the same update with one more term rho_t (m_t - m_s)
  replaces z_t. No extra network evaluation: NFE = steps.

The final step has no corrector (no evaluation at its end). To sigma = 0 the predictor is first
order (z = alpha_t x0_hat): bh1 would multiply by B(h) = -inf there (diffusers' UniPC returns NaN
with final_sigmas_type="zero"). Coefficients are solved once in float64 per step.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from .base import Carry, GaussianSolver, SolverConfig, eval_point, z_fold
from .exponential import _linear, multistep_orders
from .gaussian import Point
from .thresholding import ThresholdingConfig, dynamic_threshold


class UniPCConfig(SolverConfig, ThresholdingConfig):
    order: Literal[1, 2, 3] = Field(3, description="predictor order p (the corrector raises it to p + 1)")
    variant: Literal["bh1", "bh2"] = Field("bh2", description="B(h) = h (bh1, best < 10 steps unguided) or e^h - 1")
    corrector: bool = Field(True, description="apply UniC after each predictor step (free: reuses the next evaluation)")
    lower_order_final: bool = Field(True, description="lower orders on the last steps when steps < 15")


def _rhos(rks: list[float], hh: float, variant: str, corrector: bool) -> tuple[list[float], float, float]:
    """rho coefficients, h phi_1 and B(h) of UniP / UniC (order = len(rks) for UniC, +1 for UniP)."""
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else math.expm1(hh)
    order = len(rks)
    h_phi_k = h_phi_1 / hh - 1.0
    fact = 1
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    big_r = torch.tensor(rows, dtype=torch.float64)
    bb = torch.tensor(b, dtype=torch.float64)
    if corrector:
        rhos = [0.5] if order == 1 else torch.linalg.solve(big_r, bb).tolist()
    else:
        rhos = [] if order == 1 else ([0.5] if order == 2 else torch.linalg.solve(big_r[:-1, :-1], bb[:-1]).tolist())
    return rhos, h_phi_1, b_h


def unipc_update(p: Point, q: Point, prev: list[Point], order: int, variant: str, corrector: bool) -> dict[str, float]:
    """Coefficients on (z_s; m_s, m_{s-1}, ...; [m_t]) of UniP (corrector=False) or UniC."""
    h = q.lam - p.lam
    if not math.isfinite(h):  # to sigma = 0: first-order data update z = alpha_t m_s
        out = {"cx": 0.0, "d0": q.a}
        out["cx"], out["cy"] = z_fold(p, q, 0.0)
        return out
    hh = -h
    rks = [(pr.lam - p.lam) / h for pr in prev[:order - 1]] + [1.0]
    rhos, h_phi_1, b_h = _rhos(rks, hh, variant, corrector)
    d = [-q.a * h_phi_1] + [0.0] * 3
    for k, r in enumerate(rks[:-1]):  # D_k = (m_{k+1} - m_0) / r_k
        c = -q.a * b_h * rhos[k] / r
        d[k + 1] += c
        d[0] -= c
    out = {f"d{j}": v for j, v in enumerate(d)}
    if corrector:  # + rho_t (m_t - m_s)
        c = -q.a * b_h * rhos[-1]
        out["dt"] = c
        out["d0"] -= c
    out["cx"], out["cy"] = z_fold(p, q, q.c / p.c)
    return out


class UniPC(GaussianSolver):
    """UniPC bh1 / bh2, multistep predictor-corrector in data-prediction form (NFE = steps)."""

    Config = UniPCConfig

    def build_plan(self, process):
        cfg = self.config
        zero = self.final_is_zero(process)
        ts = self.grid(process, cfg.steps)
        pts = self.points(process, ts)
        orders = multistep_orders(cfg.steps, cfg.order, cfg.lower_order_final, zero)
        rows = []
        for i in range(cfg.steps):
            p, q = pts[i], pts[i + 1]
            row = {"order": float(orders[i]), "corr": 0.0}
            eval_point(row, "s0", p)
            row.update(unipc_update(p, q, pts[:i][::-1], orders[i], cfg.variant, False))
            if cfg.corrector and i > 0:  # correct x_i (predicted by step i-1) with m_i
                c = unipc_update(pts[i - 1], p, pts[:i - 1][::-1], orders[i - 1], cfg.variant, True)
                row.update({"k" + k: v for k, v in c.items()})
                row["corr"] = 1.0
            rows.append(row)
        return self.make_plan(ts, rows)

    def step(self, x, i, plan, denoiser, cond, generator, carry: Carry):
        row, y, hist = carry.rows[i], carry.y, carry.history
        pred, m = carry.evaluate(denoiser, x, i, "s0", cond)
        if self.config.thresholding:
            m = dynamic_threshold(m, self.config.threshold_ratio, self.config.threshold_max)
        if row["corr"]:  # UniC: z_i <- update(z_{i-1}; m_{i-1}, ...; m_i), m_i evaluated at predicted z_i
            x = _linear(carry.extra["x_prev"], row, hist[:3], y, prefix="k")
            x = x.add(m, alpha=row["kdt"])
        hist.insert(0, m)
        del hist[3:]
        carry.extra["x_prev"] = x
        return _linear(x, row, hist, y), carry, pred
