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

On the rows: step i evaluates m_i at the predicted x_i, corrects z_i = x_i - b y with UniC
(from the carried state term z_{i-1} and m_{i-1}, m_{i-2}, m_{i-3}, m_i) and predicts x_{i+1} with
UniP from the corrected z_i (for a re-noising prediction, CFG++: its a x0 + c eps plus the
correction). The final step has no corrector (no evaluation at its end). To sigma = 0 the predictor is first
order (z = alpha_t x0_hat): bh1 would multiply by B(h) = -inf there (diffusers' UniPC returns NaN
with final_sigmas_type="zero"). Coefficients are solved once in float64 per step.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from dataclasses import dataclass

from .base import GaussianSolver, LinearStep, SolverConfig, data_prediction, lincomb, select, state
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


def unipc_coefficients(p: Point, q: Point, prev: list[Point], order: int, variant: str,
                       corrector: bool) -> tuple[float, list[float], float]:
    """(wz, [d_0, d_1, d_2], d_t) of UniP (corrector=False) or UniC on z_t = wz z_s +
    sum_j d_j m_{s_j} (+ d_t m_t)."""
    h = q.lam - p.lam
    if not math.isfinite(h):  # to sigma = 0: first-order data update z = alpha_t m_s
        return 0.0, [q.a, 0.0, 0.0], 0.0
    hh = -h
    rks = [(pr.lam - p.lam) / h for pr in prev[:order - 1]] + [1.0]
    rhos, h_phi_1, b_h = _rhos(rks, hh, variant, corrector)
    d = [-q.a * h_phi_1, 0.0, 0.0]
    for k, r in enumerate(rks[:-1]):  # D_k = (m_{k+1} - m_0) / r_k
        c = -q.a * b_h * rhos[k] / r
        d[k + 1] += c
        d[0] -= c
    dt = 0.0
    if corrector:  # + rho_t (m_t - m_s)
        dt = -q.a * b_h * rhos[-1]
        d[0] -= dt
    return q.c / p.c, d, dt


@dataclass(frozen=True)
class UniPCStep(LinearStep):
    """UniP: z_{i+1} = wz z_i + d0 m_i + d1 m_{i-1} + d2 m_{i-2}; UniC (where ``corr`` = 1):
    x_i <- kwz z_{i-1} + kd0 m_{i-1} + kd1 m_{i-2} + kd2 m_{i-3} + kdt m_i + b_i y."""

    d1: float
    d2: float
    corr: float
    kwz: float
    kd0: float
    kd1: float
    kd2: float
    kdt: float


class UniPC(GaussianSolver):
    """UniPC bh1 / bh2, multistep predictor-corrector in data-prediction form (NFE = steps)."""

    Config = UniPCConfig
    #: carry: (y, m_{i-1}, m_{i-2}, m_{i-3}, z_{i-1})
    history = 4

    def coefficients_type(self):
        return UniPCStep

    def rows(self, process):
        cfg = self.config
        ts, pts, orders = self.multistep_grid(process, cfg.order, cfg.lower_order_final)
        rows = []
        for i in range(cfg.steps):
            p, q = pts[i], pts[i + 1]
            wz, d, _ = unipc_coefficients(p, q, pts[:i][::-1], orders[i], cfg.variant, False)
            corr = dict(corr=0.0, kwz=0.0, kd0=0.0, kd1=0.0, kd2=0.0, kdt=0.0)
            if cfg.corrector and i > 0:  # correct x_i (predicted by step i-1) with m_i
                kwz, kd, kdt = unipc_coefficients(pts[i - 1], p, pts[:i - 1][::-1], orders[i - 1], cfg.variant, True)
                corr = dict(corr=1.0, kwz=kwz, kd0=kd[0], kd1=kd[1], kd2=kd[2], kdt=kdt)
            rows.append(UniPCStep(t=p.t, a=p.a, b=p.b, c=p.c, wz=wz, d0=d[0], bq=q.b, d1=d[1], d2=d[2], **corr))
        return ts, rows

    def step_row(self, x, row: UniPCStep, model, generator, carry):
        y, m1, m2, m3, zp = carry
        pred = model(x, row.t)
        m = data_prediction(pred, x, y, row.a, row.b, row.c)
        if self.config.thresholding:
            m = dynamic_threshold(m, self.config.threshold_ratio, self.config.threshold_max)
        z = state(x, y, row, pred)
        if not isinstance(row.corr, float) or row.corr:  # UniC (a where() on Scan rows)
            zc = lincomb((row.kwz, zp), (row.kd0, m1), (row.kd1, m2), (row.kd2, m3), (row.kdt, m))
            if pred.renoises:  # keep the correction on top of the re-noised state
                zc = zc - (x if y is None else x - row.b * y) + z
            z = select(row.corr, zc, z)
        out = lincomb((row.wz, z), (row.d0, m), (row.d1, m1), (row.d2, m2), (row.bq, y))
        return out, (y, m, m1, m2, z), pred
