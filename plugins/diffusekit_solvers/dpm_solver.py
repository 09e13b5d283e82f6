"""DPM-Solver (Lu et al. 2022a, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model
Sampling in Around 10 Steps") and DPM-Solver++ (Lu et al. 2022b, "DPM-Solver++: Fast Solver for
Guided Sampling of Diffusion Probabilistic Models").

Notation (:mod:`.gaussian`): z = x - b y = alpha x0 + sigma eps, lambda = log(alpha / sigma),
a step s -> t has h = lambda_t - lambda_s > 0, sigma~ = sigma / alpha.

* DPM-Solver (noise prediction, singlestep; Algorithm 1 with r1 = 1/2 for order 2, Algorithm 4
  with r1 = 1/3, r2 = 2/3 for order 3; eqs. 3.7-3.9): z_t = (alpha_t / alpha_s) z_s -
  sigma_t (e^h - 1) eps_s - ..., written with sigma_t (e^h - 1) = alpha_t (sigma~_s - sigma~_t)
  so it stays finite at sigma_t = 0. ``steps`` is the NFE budget, split as DPM-Solver-fast
  (Sec. 3.4): full-order steps plus one lower-order remainder.
* DPM-Solver++ (data prediction): multistep 2M (Algorithm 2; eq. 8 for the first-order step),
  3M (the third-order multistep of the reference code: phi2 / phi3 terms), singlestep 2S
  (Algorithm 1, r = 1/2), and SDE-DPM-Solver++ 2M / 3M (Sec. 4.2 / Appendix, with ``eta``):
  z_t = (sigma_t / sigma_s) e^{-eta h} z_s + alpha_t [phi1 D_0 + ...] + sigma_t
  sqrt(1 - e^{-2 eta h}) xi, phi1 = 1 - e^{-(1 + eta) h}.

Final step: to sigma = 0 every solver uses its first-order data update z = alpha_t x0_hat (h =
inf would otherwise give 0 * inf); VP / VE end at t_min with sigma > 0 and keep their order.

Default grid of DPM-Solver++ below 15 steps: time-quadratic (DPM-Solver's ``time_quadratic``,
DDIM's "quad" skip) on processes whose time is not their noise level (VP, sub-VP, bridges);
log-SNR otherwise (from 15 steps on, where the multistep order matters and the log-SNR grid's
equal step ratios keep 3M accurate; and on EDM / VE / PFGM++, where t = sigma and a quadratic
grid in sigma leaves h ~ 1.5 on the last steps). Measured on the benchmark mixtures (docs/plugins/solvers.md, "Few steps"), the log-SNR
grid spends about half of a 5-step budget where the data are still Gaussian-like (lambda < -2)
and at very low noise, and leaves the middle of the log-SNR range, where the posterior mean
moves most, with steps of h ~ 1.9; the time-quadratic grid concentrates there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Union

from diffusekit.process import SigmaParameterized

from pydantic import Field

from .base import (GaussianSolver, LinearStep, MultistepStep, SolverConfig, lincomb, multistep_step, phi1,
                   prediction, singlestep_orders, state)
from .gaussian import Point, point, t_of_lambda
from .thresholding import ThresholdingConfig, dynamic_threshold


# ------------------------------------------------------------------------------ singlestep engine
@dataclass(frozen=True)
class SinglestepStep(LinearStep):
    """A singlestep step with ``order`` - 1 intermediate evaluations (static field ``order``):

    u_1 = u1wz z_s + u1d0 D_0 (at (t1, a1, b1, c1)); u_2 = u2wz z_s + u2d0 D_0 + u2d1 D_1 (at t2);
    z_t = wz z_s + d0 D_0 + d1 D_1 + d2 D_2. Unused stages have zero coefficients."""

    TIMES = ("t", "t1", "t2")
    STATIC = ("order",)
    order: int
    d1: float
    d2: float
    t1: float
    a1: float
    b1: float
    c1: float
    u1wz: float
    u1d0: float
    t2: float
    a2: float
    b2: float
    c2: float
    u2wz: float
    u2d0: float
    u2d1: float


_NO_STAGE = dict(t1=0.0, a1=1.0, b1=0.0, c1=1.0, u1wz=0.0, u1d0=0.0,
                 t2=0.0, a2=1.0, b2=0.0, c2=1.0, u2wz=0.0, u2d0=0.0, u2d1=0.0)


def _stage(key: str, p: Point) -> dict:
    return {f"t{key}": p.t, f"a{key}": p.a, f"b{key}": p.b, f"c{key}": p.c}


def singlestep_step(solver: GaussianSolver, x, row: SinglestepStep, model, carry, kind: str, prepare):
    """The shared stage loop of DPM-Solver-2/3 (noise form) and DPM-Solver++ 2S (data form)."""
    y = carry[0]
    pred = model(x, row.t)
    d0 = prepare(prediction(pred, x, y, row.a, row.b, row.c, kind))
    z = state(x, y, row, pred)
    ds = [d0]
    if row.order >= 2:
        u = lincomb((row.u1wz, z), (row.u1d0, d0), (row.b1, y))
        pred = model(u, row.t1)
        ds.append(prepare(prediction(pred, u, y, row.a1, row.b1, row.c1, kind)))
    if row.order >= 3:
        u = lincomb((row.u2wz, z), (row.u2d0, d0), (row.u2d1, ds[1]), (row.b2, y))
        pred = model(u, row.t2)
        ds.append(prepare(prediction(pred, u, y, row.a2, row.b2, row.c2, kind)))
    terms = [(row.wz, z), (row.d0, d0)] + list(zip((row.d1, row.d2), ds[1:]))
    return lincomb(*terms, (row.bq, y)), carry, pred


# ------------------------------------------------------------------------------ DPM-Solver (noise)
class DPMSolverConfig(SolverConfig):
    steps: int = Field(10, ge=1, le=100_000,
                       description="network evaluations (NFE); split into singlestep orders as DPM-Solver-fast")
    order: Literal[1, 2, 3] = Field(3, description="solver order (1 = DDIM)")


def _psi(p: Point, q: Point) -> float:
    """sigma_q (e^{h} - 1) = alpha_q (sigma~_p - sigma~_q) (finite at sigma_q = 0)."""
    return q.a * (p.sigma - q.sigma)


def dpm_solver_step(process, p: Point, q: Point, order: int) -> SinglestepStep:
    """DPM-Solver-1/2/3 coefficients of the step p -> q (Algorithms 1 and 4)."""
    h = q.lam - p.lam
    psi = _psi(p, q)
    d = [-psi, 0.0, 0.0]
    st = dict(_NO_STAGE)
    if order >= 2:
        r1 = 0.5 if order == 2 else 1.0 / 3.0
        s1 = point(process, t_of_lambda(process, p.lam + r1 * h))
        st.update(_stage("1", s1), u1wz=s1.a / p.a, u1d0=-_psi(p, s1))
        if order == 2:  # Alg. 1 ("DPM-Solver-2"): - sigma_t (e^h - 1) / (2 r1) (eps_s1 - eps_s)
            c = psi / (2 * r1)
            d[0] += c
            d[1] -= c
        else:  # Alg. 4 ("DPM-Solver-3"), r1 = 1/3, r2 = 2/3
            r2 = 2.0 / 3.0
            s2 = point(process, t_of_lambda(process, p.lam + r2 * h))
            kk = (s2.c * r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1.0)
            st.update(_stage("2", s2), u2wz=s2.a / p.a, u2d0=-_psi(p, s2) + kk, u2d1=-kk)
            ll = (q.c / r2) * (math.expm1(h) / h - 1.0)
            d[0] += ll
            d[2] -= ll
    return SinglestepStep(t=p.t, a=p.a, b=p.b, c=p.c, wz=q.a / p.a, d0=d[0], bq=q.b, order=order,
                          d1=d[1], d2=d[2], **st)


class DPMSolver(GaussianSolver):
    """DPM-Solver-1/2/3 (Lu et al. 2022a), singlestep, noise-prediction form; ``steps`` = NFE."""

    Config = DPMSolverConfig
    kind = "eps"

    def coefficients_type(self):
        return SinglestepStep

    def rows(self, process):
        zero = self.final_is_zero(process)
        orders = singlestep_orders(self.config.steps, self.config.order, zero)
        ts = self.grid(process, len(orders))
        pts = self.points(process, ts)
        return ts, [dpm_solver_step(process, p, q, k) for p, q, k in zip(pts[:-1], pts[1:], orders)]

    def step_row(self, x, row, model, generator, carry):
        return singlestep_step(self, x, row, model, carry, "eps", lambda d: d)


# ------------------------------------------------------------------------------ DPM-Solver++
class DPMSolverPPConfig(SolverConfig, ThresholdingConfig):
    variant: Literal["1", "2M", "3M", "2S", "2M-SDE", "3M-SDE"] = Field(
        "2M", description="2M / 3M: multistep ODE; 2S: singlestep (steps = NFE); *-SDE: SDE-DPM-Solver++")
    schedule: Optional[Union[str, dict]] = Field(
        None, description="time grid (default: 'quadratic' in t below 15 steps on processes whose time is not "
                          "their noise level (VP, sub-VP, bridges), else 'logsnr')")
    eta: float = Field(1.0, ge=0.0, description="noise scale of the SDE variants (1 = reverse SDE)")
    lower_order_final: bool = Field(True, description="lower orders on the last steps when steps < 15")


def dpmpp_multistep_step(p: Point, q: Point, prev: list[Point], order: int, eta: float) -> MultistepStep:
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
    elif order == 3:  # + alpha_t phi2 D1 - alpha_t phi3 D2 (reference third-order multistep)
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
    cn = q.c * math.sqrt(phi1(2 * eta_h)) if eta_h and q.c > 0 else 0.0
    return MultistepStep(t=p.t, a=p.a, b=p.b, c=p.c, wz=wz, d0=d[0], bq=q.b, d1=d[1], d2=d[2], cn=cn)


def dpmpp_2s_step(process, p: Point, q: Point, order: int) -> SinglestepStep:
    """DPM-Solver++(2S) (Algorithm 1, r = 1/2): a first-order step to lambda_s + h/2, then the
    midpoint correction alpha_t phi1 (D_1 - D_0)."""
    h = q.lam - p.lam
    st = dict(_NO_STAGE)
    d0, d1 = q.a * phi1(h), 0.0
    if order == 2:
        s1 = point(process, t_of_lambda(process, p.lam + 0.5 * h))
        st.update(_stage("1", s1), u1wz=s1.c / p.c, u1d0=s1.a * phi1(0.5 * h))
        c = q.a * phi1(h)  # (1 / (2 r)) alpha_t phi1 (D1 - D0), r = 1/2
        d0, d1 = d0 - c, c
    return SinglestepStep(t=p.t, a=p.a, b=p.b, c=p.c, wz=q.c / p.c, d0=d0, bq=q.b, order=order,
                          d1=d1, d2=0.0, **st)


class DPMSolverPP(GaussianSolver):
    """DPM-Solver++ (Lu et al. 2022b): 2M / 3M multistep, 2S singlestep, SDE variants, thresholding."""

    Config = DPMSolverPPConfig

    @property
    def history(self) -> int:  # type: ignore[override]
        return 0 if self.config.variant == "2S" else 2

    def schedule_for(self, process):
        spec = self.config.schedule
        if spec is None:
            few = self.config.steps < 15 and not isinstance(process, SigmaParameterized)
            return "quadratic" if few else "logsnr"
        return spec

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.variant.endswith("SDE") and self.config.eta > 0

    def coefficients_type(self):
        return SinglestepStep if self.config.variant == "2S" else MultistepStep

    def rows(self, process):
        cfg = self.config
        zero = self.final_is_zero(process)
        if cfg.variant == "2S":
            orders = singlestep_orders(cfg.steps, 2, zero)
            ts = self.grid(process, len(orders))
            pts = self.points(process, ts)
            return ts, [dpmpp_2s_step(process, p, q, k) for p, q, k in zip(pts[:-1], pts[1:], orders)]
        order = {"1": 1, "2M": 2, "3M": 3, "2M-SDE": 2, "3M-SDE": 3}[cfg.variant]
        eta = cfg.eta if cfg.variant.endswith("SDE") else 0.0
        ts, pts, orders = self.multistep_grid(process, order, cfg.lower_order_final)
        return ts, [dpmpp_multistep_step(pts[i], pts[i + 1], pts[:i][::-1], orders[i], eta) for i in range(len(orders))]

    def _threshold(self, d):
        cfg = self.config
        return dynamic_threshold(d, cfg.threshold_ratio, cfg.threshold_max) if cfg.thresholding else d

    def step_row(self, x, row, model, generator, carry):
        if self.config.variant == "2S":
            return singlestep_step(self, x, row, model, carry, "x0", self._threshold)
        return multistep_step(self, x, row, model, generator, carry, "x0",
                              self._threshold if self.config.thresholding else None)
