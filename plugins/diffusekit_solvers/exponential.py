"""Exponential integrators of the probability-flow ODE / reverse SDE: DDIM, DPM-Solver,
DPM-Solver++ and DEIS.

Notation (see :mod:`.gaussian`): z = x - b y = alpha x0 + sigma eps with alpha = a, sigma = c,
lambda = log(alpha / sigma), a step s -> t has h = lambda_t - lambda_s > 0, sigma~ = sigma / alpha.
Every update below is linear in (z_s, model outputs, fresh noise), so its coefficients are
computed once in float64 and a step is ``x <- cx x + sum_j d_j D_j + cy y + cn xi``
(``cy`` folds z = x - b y back onto x).

* DDIM (Song et al. 2021a, eq. 12, any alpha/sigma): z_t = alpha_t x0 + sqrt(sigma_t^2 - s^2) eps
  + s xi with s = eta sigma_t sqrt(1 - e^{-2h}); eta = 0 is the first-order exponential integrator
  z_t = (sigma_t / sigma_s) z_s + alpha_t (1 - e^{-h}) x0 (DPM-Solver++ eq. 8 / DPM-Solver eq. 3.7).
* DPM-Solver (Lu et al. 2022a, Algs. 1, 4; noise prediction, singlestep, r1 = 1/2 for order 2,
  r1 = 1/3, r2 = 2/3 for order 3): z_t = (alpha_t / alpha_s) z_s - sigma_t (e^h - 1) eps_s - ...,
  written with sigma_t (e^h - 1) = alpha_t (sigma~_s - sigma~_t).
* DPM-Solver++ (Lu et al. 2022b; data prediction): multistep 2M (Alg. 2), 3M (third-order
  multistep of the official code), singlestep 2S (Alg. 1, r = 1/2), and the SDE variants
  (Sec. 4.2; 2M/3M with ``eta``): z_t = (sigma_t / sigma_s) e^{-eta h} z_s + alpha_t [phi1 D0 +
  ...] + sigma_t sqrt(1 - e^{-2 eta h}) xi, phi1 = 1 - e^{-(1 + eta) h}.
* DEIS tAB (Zhang & Chen 2022, eq. 15): x~_t = x~_s + sum_j C_j eps_{s_j},
  C_j = int_s^t l_j(tau) dsigma~(tau) with l_j the Lagrange basis on the last k times
  (Gauss-Legendre quadrature in float64).

Final step: to sigma = 0 every solver uses its first-order data update, z = alpha_t x0_hat (h =
inf would otherwise give 0 * inf); VP / VE end at t_min with sigma > 0 and keep their order.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from diffusekit.process import AdditiveGaussian

from .base import Carry, GaussianSolver, SolverConfig, eval_point, phi1, z_fold
from .gaussian import Point, point, t_of_lambda
from .thresholding import ThresholdingConfig, dynamic_threshold


# ------------------------------------------------------------------------------ step kernels
def _linear(x, row, ds, y, prefix=""):
    out = x * row[prefix + "cx"]
    for j, d in enumerate(ds):
        c = row.get(f"{prefix}d{j}", 0.0)
        if c != 0.0:
            out = out.add(d, alpha=c)
    if y is not None:
        out = out.add(y, alpha=row[prefix + "cy"])
    return out


class _Exponential(GaussianSolver):
    """Shared step loops: multistep (history of outputs) and singlestep (stages)."""

    kind: str = "x0"  # which model output the update uses: "x0" (data) or "eps" (noise)
    multistep: bool = True

    def _prepare(self, d):
        cfg = self.config
        if self.kind == "x0" and isinstance(cfg, ThresholdingConfig) and cfg.thresholding:
            return dynamic_threshold(d, cfg.threshold_ratio, cfg.threshold_max)
        return d

    def step(self, x, i, plan, denoiser, cond, generator, carry: Carry):
        row, y = carry.rows[i], carry.y
        pred, d = carry.evaluate(denoiser, x, i, "s0", cond, self.kind)
        d = self._prepare(d)
        if self.multistep:
            hist = carry.history
            hist.insert(0, d)
            del hist[3:]
            ds = hist
        else:
            ds = [d]
            for k in range(1, int(row["order"])):
                u = _linear(x, row, ds, y, prefix=f"u{k}")
                pred, dk_ = carry.evaluate(denoiser, u, i, f"s{k}", cond, self.kind)
                ds.append(self._prepare(dk_))
        out = _linear(x, row, ds, y)
        if row["cn"] != 0.0:  # host-side plan value: SDE / eta > 0 steps draw noise
            out = out.add(self.noise(x, generator), alpha=row["cn"])
        return out, carry, pred


def multistep_orders(n: int, order: int, lower_order_final: bool, zero_end: bool) -> list[int]:
    """Warm-up with lower orders; optionally lower orders on the last steps (n < 15, as DPM-Solver);
    first order on a final step to sigma = 0."""
    out = []
    for i in range(n):
        k = min(order, i + 1)
        if lower_order_final and n < 15:
            k = min(k, n - i)
        out.append(k)
    if zero_end:
        out[-1] = 1
    return out


def singlestep_orders(nfe: int, order: int, zero_end: bool) -> list[int]:
    """Split an NFE budget into full-order singlestep steps plus one lower-order remainder step
    (DPM-Solver Sec. 3.4); the final step to sigma = 0 is first order."""
    if zero_end and nfe > 1:
        return singlestep_orders(nfe - 1, order, False) + [1]
    if order == 1 or nfe == 1:
        return [1] * nfe
    k, rem = divmod(nfe, order)
    return [order] * k + ([rem] if rem else [])


# ------------------------------------------------------------------------------ DDIM
class DDIMConfig(SolverConfig):
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta: 0 = probability-flow ODE, 1 = ancestral")


class DDIM(_Exponential):
    """DDIM (Song et al. 2021a eq. 12) for any alpha/sigma; eta = 0 is the first-order exponential
    integrator of the PF-ODE."""

    Config = DDIMConfig
    multistep = False

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.eta > 0

    def build_plan(self, process):
        ts = self.grid(process, self.config.steps)
        pts = self.points(process, ts)
        rows = []
        for p, q in zip(pts[:-1], pts[1:]):
            h = q.lam - p.lam
            s_eta = self.config.eta * q.c * math.sqrt(phi1(2 * h)) if q.c > 0 else 0.0
            wz = math.sqrt(max(q.c ** 2 - s_eta ** 2, 0.0)) / p.c
            row = {"order": 1.0, "d0": q.a - wz * p.a, "cn": s_eta}
            row["cx"], row["cy"] = z_fold(p, q, wz)
            eval_point(row, "s0", p)
            rows.append(row)
        return self.make_plan(ts, rows)


# ------------------------------------------------------------------------------ DPM-Solver (noise)
class DPMSolverConfig(SolverConfig):
    steps: int = Field(10, ge=1, le=100_000,
                       description="network evaluations (NFE); split into singlestep orders as DPM-Solver-fast")
    order: Literal[1, 2, 3] = Field(3, description="solver order (1 = DDIM)")


class DPMSolver(_Exponential):
    """DPM-Solver-1/2/3 (Lu et al. 2022a), singlestep, noise-prediction form; ``steps`` = NFE."""

    Config = DPMSolverConfig
    kind = "eps"
    multistep = False

    def build_plan(self, process):
        zero = self.final_is_zero(process)
        orders = singlestep_orders(self.config.steps, self.config.order, zero)
        ts = self.grid(process, len(orders))
        pts = self.points(process, ts)
        rows = []
        for k, (p, q) in enumerate(zip(pts[:-1], pts[1:])):
            rows.append(self._row(process, p, q, orders[k]))
        return self.make_plan(ts, rows)

    @staticmethod
    def _psi(p: Point, q: Point) -> float:
        """sigma_q (e^{h} - 1) = alpha_q (sigma~_p - sigma~_q) (finite at sigma_q = 0)."""
        return q.a * (p.sigma - q.sigma)

    def _row(self, process, p: Point, q: Point, order: int) -> dict[str, float]:
        row = {"order": float(order), "cn": 0.0}
        eval_point(row, "s0", p)
        h = q.lam - p.lam
        psi = self._psi(p, q)
        d = [-psi, 0.0, 0.0]
        if order >= 2:
            r1 = 0.5 if order == 2 else 1.0 / 3.0
            s1 = point(process, t_of_lambda(process, p.lam + r1 * h))
            eval_point(row, "s1", s1)
            row["u1cx"], row["u1cy"] = z_fold(p, s1, s1.a / p.a)
            row["u1d0"] = -self._psi(p, s1)
            if order == 2:  # Alg. 1 ("DPM-Solver-2"): - sigma_t (e^h - 1) / (2 r1) (eps_s1 - eps_s)
                c = psi / (2 * r1)
                d[0] += c
                d[1] -= c
            else:  # Alg. 4 ("DPM-Solver-3"), r1 = 1/3, r2 = 2/3
                r2 = 2.0 / 3.0
                s2 = point(process, t_of_lambda(process, p.lam + r2 * h))
                eval_point(row, "s2", s2)
                row["u2cx"], row["u2cy"] = z_fold(p, s2, s2.a / p.a)
                kk = (s2.c * r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1.0)
                row["u2d0"] = -self._psi(p, s2) + kk
                row["u2d1"] = -kk
                ll = (q.c / r2) * (math.expm1(h) / h - 1.0)
                d[0] += ll
                d[2] -= ll
        row["cx"], row["cy"] = z_fold(p, q, q.a / p.a)
        row.update({f"d{j}": v for j, v in enumerate(d)})
        return row


# ------------------------------------------------------------------------------ DPM-Solver++
class DPMSolverPPConfig(SolverConfig, ThresholdingConfig):
    variant: Literal["1", "2M", "3M", "2S", "2M-SDE", "3M-SDE"] = Field(
        "3M", description="2M / 3M: multistep ODE; 2S: singlestep (steps = NFE); *-SDE: SDE-DPM-Solver++")
    eta: float = Field(1.0, ge=0.0, description="noise scale of the SDE variants (1 = reverse SDE)")
    lower_order_final: bool = Field(True, description="lower orders on the last steps when steps < 15")


def dpmpp_multistep_row(p: Point, q: Point, prev: list[Point], order: int, eta: float) -> dict[str, float]:
    """Coefficients of one multistep DPM-Solver++ step p -> q (``prev``: earlier points, newest first)."""
    h = q.lam - p.lam
    eta_h = eta * h if eta > 0 else 0.0
    hh = h + eta_h
    ph1 = phi1(hh)
    wz = (q.c / p.c) * (math.exp(-eta_h) if eta_h else 1.0)
    d = [q.a * ph1, 0.0, 0.0]
    if order == 2:  # midpoint form (Alg. 2): + alpha_t phi1 / (2 r0) (D0 - D1)
        r0 = (p.lam - prev[0].lam) / h
        c = 0.5 * q.a * ph1 / r0
        d[0] += c
        d[1] -= c
    elif order == 3:  # + alpha_t phi2 D1 - alpha_t phi3 D2 (official third-order multistep)
        r0 = (p.lam - prev[0].lam) / h
        r1 = (prev[0].lam - prev[1].lam) / h
        ph2 = math.expm1(-hh) / hh + 1.0
        ph3 = ph2 / hh - 0.5
        big_a, big_b = q.a * ph2, -q.a * ph3
        c10 = big_a * (1 + r0 / (r0 + r1)) + big_b / (r0 + r1)  # coefficient of (D0 - D1) / r0
        c11 = -big_a * r0 / (r0 + r1) - big_b / (r0 + r1)  # coefficient of (D1 - D2) / r1
        d[0] += c10 / r0
        d[1] += -c10 / r0 + c11 / r1
        d[2] += -c11 / r1
    row = {"order": float(order), "d0": d[0], "d1": d[1], "d2": d[2],
           "cn": q.c * math.sqrt(phi1(2 * eta_h)) if eta_h and q.c > 0 else 0.0}
    row["cx"], row["cy"] = z_fold(p, q, wz)
    eval_point(row, "s0", p)
    return row


class DPMSolverPP(_Exponential):
    """DPM-Solver++ (Lu et al. 2022b): 2M / 3M multistep, 2S singlestep, SDE variants, thresholding."""

    Config = DPMSolverPPConfig

    @property
    def multistep(self) -> bool:  # type: ignore[override]
        return self.config.variant != "2S"

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.variant.endswith("SDE") and self.config.eta > 0

    def build_plan(self, process):
        cfg = self.config
        zero = self.final_is_zero(process)
        if cfg.variant == "2S":
            orders = singlestep_orders(cfg.steps, 2, zero)
            ts = self.grid(process, len(orders))
            pts = self.points(process, ts)
            return self.make_plan(ts, [self._row_2s(process, p, q, k) for p, q, k in zip(pts[:-1], pts[1:], orders)])
        order = {"1": 1, "2M": 2, "3M": 3, "2M-SDE": 2, "3M-SDE": 3}[cfg.variant]
        eta = cfg.eta if cfg.variant.endswith("SDE") else 0.0
        ts = self.grid(process, cfg.steps)
        pts = self.points(process, ts)
        orders = multistep_orders(cfg.steps, order, cfg.lower_order_final, zero)
        rows = [dpmpp_multistep_row(pts[i], pts[i + 1], pts[:i][::-1], orders[i], eta) for i in range(cfg.steps)]
        return self.make_plan(ts, rows)

    @staticmethod
    def _row_2s(process, p: Point, q: Point, order: int) -> dict[str, float]:
        row = dpmpp_multistep_row(p, q, [], 1, 0.0)
        row["order"] = float(order)
        if order == 2:  # Alg. 1: u = first-order step to lambda_s + h/2, then the midpoint correction
            h = q.lam - p.lam
            s1 = point(process, t_of_lambda(process, p.lam + 0.5 * h))
            eval_point(row, "s1", s1)
            row["u1cx"], row["u1cy"] = z_fold(p, s1, s1.c / p.c)
            row["u1d0"] = s1.a * phi1(0.5 * h)
            c = q.a * phi1(h)  # (1 / (2 r)) alpha_t phi1 (D1 - D0), r = 1/2
            row["d0"], row["d1"] = row["d0"] - c, c
        return row


# ------------------------------------------------------------------------------ DEIS
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


class DEIS(_Exponential):
    """DEIS tAB (Zhang & Chen 2022): multistep, noise prediction, exact integration of a Lagrange
    polynomial in t against dsigma~."""

    Config = DEISConfig
    kind = "eps"

    def build_plan(self, process):
        cfg = self.config
        zero = self.final_is_zero(process)
        ts = self.grid(process, cfg.steps)
        pts = self.points(process, ts)
        orders = multistep_orders(cfg.steps, cfg.order, cfg.lower_order_final, zero)
        nodes, weights = np.polynomial.legendre.leggauss(24)
        rows = []
        for i in range(cfg.steps):
            p, q, k = pts[i], pts[i + 1], orders[i]
            knots = [ts[i - j] for j in range(k)]
            tau = torch.tensor(0.5 * (q.t - p.t) * nodes + 0.5 * (q.t + p.t), dtype=torch.float64)
            w = torch.tensor(0.5 * (q.t - p.t) * weights, dtype=torch.float64)
            ds = _dsigma_dt(process, tau)
            row = {"order": float(k), "cn": 0.0}
            for j in range(k):
                basis = torch.ones_like(tau)
                for m in range(k):
                    if m != j:
                        basis = basis * (tau - knots[m]) / (knots[j] - knots[m])
                row[f"d{j}"] = q.a * float((w * basis * ds).sum())  # z = a x~: x~_t = x~_s + sum C_j eps_j
            row["cx"], row["cy"] = z_fold(p, q, q.a / p.a)
            eval_point(row, "s0", p)
            rows.append(row)
        return self.make_plan(ts, rows)
