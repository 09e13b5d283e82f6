"""Common engine of the Gaussian solvers: grid, typed per-step coefficients, the shared step
contract.

Each solver builds, once per (process, grid, steps), a :class:`~diffusekit.sampler.Plan` whose
``rows`` are instances of the solver's own frozen :class:`~diffusekit.sampler.Coefficients`
dataclass, computed in float64 on the host. Its ``step_row`` is the algorithm, written once:
it runs with host-float rows in the Python loop, with 0-d tensor rows as the body of an ONNX
``Scan`` and row by row in an unrolled graph. Every update is linear in the state, the model
outputs and fresh noise, so a step is a few fused tensor ops (:func:`lincomb`) with no host sync
and no branching on tensor values.

Re-noising contract (CFG++ and guidance of that kind). Every update here has the form
z_t = w z_s + sum_j d_j D_j (+ noise) with z = x - b y. When the prediction carries its own
re-noising estimate (``Prediction.renoises``: x0 and eps given separately, e.g. a guided x0 with
the unconditional eps) the state term z_s is replaced by a_s x0 + c_s eps read from the
prediction (:func:`state`); for a consistent prediction the two are equal.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

import torch
from pydantic import Field

from diffusekit import datastats
from diffusekit.api import create
from diffusekit.errors import ConfigError
from diffusekit.process import AdditiveGaussian, DenoisingODE, PinnedBridge
from diffusekit.random import randn_like
from diffusekit.sampler import Coefficients, Plan, SamplerConfig, TabulatedSampler

from .gaussian import ends_at_zero_by_default, endpoint, point, t_of_lambda, zero_noise_time
from .teleport import teleport_state

Scalar = Union[float, torch.Tensor]


class SolverConfig(SamplerConfig):
    steps: int = Field(10, ge=1, le=100_000, description="number of solver steps")
    schedule: Union[str, dict] = Field(
        "logsnr", description="time grid: a registered schedule name or {'name': ..., **params}")
    teleport: Union[Literal["auto"], Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        "auto",
        description="skip the start of the trajectory with the exact PF-ODE solution for Gaussian data: "
                    "'auto' (default) where the recorded data statistics say the Gaussian model is "
                    "accurate (none without statistics), a fraction of the log-SNR range to skip "
                    "(needs the statistics), or 0 (never)")
    teleport_tol: float = Field(
        0.002, gt=0.0, le=1.0,
        description="teleport='auto': largest displacement of the skipped trajectory, in units of the "
                    "noise level where sampling resumes (RMS per dimension)")
    final_sigma_zero: Optional[bool] = Field(
        None, description="end the grid at sigma = 0 (default: yes for EDM-style sigma processes, "
                          "no for VP/VE, which end at the process's t_min)")


# ------------------------------------------------------------------------------ step helpers
def lincomb(*terms: tuple[Scalar, Optional[torch.Tensor]]) -> torch.Tensor:
    """sum_j c_j v_j. Host-float coefficients: terms with c = 0 or v = None are skipped and the
    sum is accumulated in place into the first product (one allocation). Tensor coefficients
    (a Scan row): every term with a tensor v is kept (no branching on tensor values)."""
    out = None
    for c, v in terms:
        if v is None:
            continue
        host = isinstance(c, float)
        if host and c == 0.0:
            continue
        if out is None:
            out = v * c
        elif host:
            out.add_(v, alpha=c)
        else:
            out = out + c * v
    if out is None:
        raise ValueError("lincomb: every term vanished")
    return out


def select(flag: Scalar, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where the row's flag is set, else ``b``: a Python branch on host rows, a
    ``where`` (NaN-safe) on tensor rows."""
    if isinstance(flag, float):
        return a if flag else b
    return torch.where(flag > 0.5, a, b)


def _div(v: torch.Tensor, c: Scalar) -> torch.Tensor:
    return v.mul_(1.0 / c) if isinstance(c, float) else v / c


def state(x: torch.Tensor, y: Optional[torch.Tensor], row, pred) -> torch.Tensor:
    """z_s = x - b_s y, or a_s x0 + c_s eps from a prediction that re-noises (CFG++)."""
    if pred is not None and pred.renoises:
        return lincomb((row.a, pred.x0), (row.c, pred.eps))
    return x if y is None else lincomb((1.0, x), (-row.b, y))


def prediction(pred, x, y, a: Scalar, b: Scalar, c: Scalar, kind: str) -> torch.Tensor:
    """The model output a solver's update uses: x0_hat (``kind="x0"``) or eps_hat (``"eps"``),
    converting the other one with the row's float64 (a, b, c) (x0 = (z - c eps) / a,
    eps = (z - a x0) / c, z = x - b y) instead of re-evaluating the process at t."""
    if pred.has(kind):
        return pred.get(kind)
    other, num, den = ("eps", c, a) if kind == "x0" else ("x0", a, c)
    if pred.has(other):
        z = x if y is None else x - b * y
        return _div(z - num * pred.get(other), den)
    return pred.get(kind)


def data_prediction(pred, x, y, a: Scalar, b: Scalar, c: Scalar) -> torch.Tensor:
    """x0_hat (see :func:`prediction`)."""
    return prediction(pred, x, y, a, b, c, "x0")


def phi1(h: float) -> float:
    """1 - e^{-h} (exact at h = inf)."""
    return -math.expm1(-h)


def multistep_orders(n: int, order: int, lower_order_final: bool, zero_end: bool) -> list[int]:
    """Warm-up with lower orders; optionally lower orders on the last steps (n < 15, as
    DPM-Solver); first order on a final step to sigma = 0."""
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


@dataclass(frozen=True)
class LinearStep(Coefficients):
    """One evaluation at (t, a, b, c), then z_t = wz z_s + d0 D_0 + ... ; x_t = z_t + bq y.

    The common layout of the single-evaluation exponential steps (DDIM, DPM-Solver++ multistep,
    DEIS, UniPC's predictor); each solver extends it with its own fields."""

    TIMES = ("t",)
    t: float
    a: float
    b: float
    c: float
    wz: float
    d0: float
    bq: float


@dataclass(frozen=True)
class MultistepStep(LinearStep):
    """z_t = wz z_s + d0 D_s + d1 D_{s-1} + d2 D_{s-2} + cn xi (D: x0_hat or eps_hat);
    lower orders have d1 / d2 = 0."""

    d1: float
    d2: float
    cn: float


def multistep_step(solver: "GaussianSolver", x, row: MultistepStep, model, generator, carry, kind: str,
                   prepare=None):
    """The shared step of the linear multistep methods (DPM-Solver++ 2M / 3M / SDE, DEIS tAB):
    one evaluation, then :class:`MultistepStep`'s combination; the carry is (y, D_{s-1}, D_{s-2})."""
    y, m1, m2 = carry
    pred = model(x, row.t)
    d = prediction(pred, x, y, row.a, row.b, row.c, kind)
    if prepare is not None:
        d = prepare(d)
    out = lincomb((row.wz, state(x, y, row, pred)), (row.d0, d), (row.d1, m1), (row.d2, m2), (row.bq, y))
    if solver.stochastic:
        out = out.add_(solver.noise(x, generator), alpha=row.cn)
    return out, (y, d, m1), pred


# ------------------------------------------------------------------------------ base class
class GaussianSolver(TabulatedSampler):
    """Base of the solvers here.

    Deterministic configurations solve the probability-flow ODE in its denoising form, so they
    run on every AdditiveGaussian or DenoisingODE process (PFGM++ included); configurations
    that inject noise (``stochastic``) need Gaussian noise (AdditiveGaussian). Bridges pinned
    at the condition (c = 0 at t_max) are refused: the grid would start where eps = (x - a x0
    - b y) / c divides by zero; their own samplers start from the condition.

    Subclasses implement ``rows(process) -> (times, [Coefficients])``, ``coefficients_type``,
    ``history`` (number of carried model outputs) and ``step_row``.
    """

    Config = SolverConfig
    requires = ((AdditiveGaussian, DenoisingODE),)
    excludes = (PinnedBridge,)
    renoise_eps = True
    #: model outputs kept in the carry (multistep history)
    history: int = 0

    def required_capabilities(self) -> tuple:
        return (AdditiveGaussian,) if self.stochastic else self.requires

    # -- grid ---------------------------------------------------------------------------------
    def ends_at_zero(self, process) -> bool:
        flag = self.config.final_sigma_zero
        if flag is None:
            return ends_at_zero_by_default(process)
        if flag and zero_noise_time(process) is None:
            raise ConfigError(f"{type(process).__name__} never reaches sigma = 0; set final_sigma_zero=False",
                              loc="sampler.final_sigma_zero")
        return flag

    def schedule_for(self, process) -> Union[str, dict]:
        """The time grid spec for ``process`` (default: the configured ``schedule``)."""
        return self.config.schedule

    def explicit_grid(self, process) -> bool:
        spec = self.schedule_for(process)
        return isinstance(spec, dict) and spec.get("name") == "explicit"

    def final_is_zero(self, process) -> bool:
        """Whether the grid's last time has sigma = 0 (by default / by config, or an explicit list)."""
        spec = self.schedule_for(process)
        if isinstance(spec, dict) and spec.get("name") == "explicit":
            return point(process, float(spec["times"][-1])).c == 0.0
        return self.ends_at_zero(process)

    # -- teleportation --------------------------------------------------------------------------
    #: teleport="auto" resolved by :meth:`with_buffers`: the log-SNR to start at (None: t_max)
    teleport_logsnr: Optional[float] = None
    #: the largest fraction of the log-SNR range teleport="auto" skips
    MAX_AUTO_FRACTION = 0.5

    def with_buffers(self, buffers: dict) -> "GaussianSolver":
        """Resolve ``teleport="auto"``: start at the noise-to-signal ratio sigma* that
        :func:`diffusekit.datastats.teleport_sigma` picks from the recorded error profile
        (lambda* = log(a / c) = -log sigma*); unchanged without statistics."""
        if self.config.teleport != "auto" or not datastats.has_statistics(buffers):
            return self
        sigma = datastats.teleport_sigma(buffers, self.config.teleport_tol)
        if sigma is None:
            return self
        lam = -math.log(sigma)  # the solvers' lambda = log(a / c) (DPM-Solver's half log-SNR)
        cache = self.__dict__.setdefault("_resolved", {})
        if lam not in cache:
            import copy

            twin = copy.copy(self)
            twin.__dict__.pop("_plans", None)
            twin.__dict__.pop("_resolved", None)
            twin.teleport_logsnr = lam
            cache.clear()
            cache[lam] = twin
        return cache[lam]

    def teleports(self, process) -> bool:
        """Whether the grid starts after t_max: a teleport fraction, or a resolved "auto" on an
        AdditiveGaussian process (the Gaussian flow is exact only for Gaussian perturbations, so
        "auto" leaves e.g. PFGM++'s heavy-tailed kernel alone)."""
        f = self.config.teleport
        if f == "auto":
            return self.teleport_logsnr is not None and isinstance(process, AdditiveGaussian)
        return f > 0.0

    def start_time(self, process, t_end: float) -> float:
        """t_max, or the teleport target: lambda_start = lambda_max + f (lambda_end - lambda_max)
        for a fraction f, or the resolved lambda* of "auto" (at most MAX_AUTO_FRACTION of the
        range, never before t_max)."""
        if not self.teleports(process):
            return float(process.t_max)
        lam_hi, lam_lo = point(process, process.t_max).lam, point(process, t_end).lam
        f = self.config.teleport
        if f == "auto":
            f = min(max((self.teleport_logsnr - lam_hi) / (lam_lo - lam_hi), 0.0), self.MAX_AUTO_FRACTION)
            if f == 0.0:
                return float(process.t_max)
        return t_of_lambda(process, lam_hi + f * (lam_lo - lam_hi))

    def grid(self, process, intervals: int) -> list[float]:
        """``intervals + 1`` decreasing float64 times from the start to the end.

        When the grid ends at sigma = 0 the schedule spans [t_start, t_min] with
        ``intervals - 1`` intervals and the time of sigma = 0 is appended (EDM, Karras et al.
        2022, eq. 5 followed by sigma_N = 0).
        """
        spec = self.schedule_for(process)
        if isinstance(spec, dict) and spec.get("name") == "explicit":  # used as given (may end at sigma = 0)
            if self.config.teleport not in ("auto", 0.0):
                raise ConfigError("teleport needs a generated grid; with an explicit list start it at the "
                                  "teleport time yourself", loc="sampler.teleport")
            return [float(v) for v in create("schedule", spec, loc="sampler.schedule").times(process, intervals)]
        zero = self.ends_at_zero(process)
        t_min = float(process.t_min)
        t_start = self.start_time(process, t_min)
        name, params = (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items() if k != "name"})
        n = intervals - 1 if zero else intervals
        if t_start != float(process.t_max):
            params.setdefault("t_start", t_start)
        if n >= 1:
            grid = create("schedule", {"name": name, **params}, loc="sampler.schedule").times(process, n)
            ts = [float(v) for v in grid]
        else:
            ts = [t_start]
        if zero:
            ts.append(zero_noise_time(process))
        if len(ts) != intervals + 1 or any(b >= a for a, b in zip(ts, ts[1:])):
            raise ConfigError(f"time grid {ts[:4]}... must hold {intervals + 1} strictly decreasing times",
                              loc="sampler.schedule")
        return ts

    def points(self, process, ts: list[float]):
        return [point(process, t) for t in ts]

    def multistep_grid(self, process, order: int, lower_order_final: bool):
        """(times, points, per-step orders) of a multistep method with ``config.steps`` steps."""
        steps = self.config.steps
        ts = self.grid(process, steps)
        return ts, self.points(process, ts), multistep_orders(steps, order, lower_order_final,
                                                              self.final_is_zero(process))

    # -- plan / carry -------------------------------------------------------------------------
    @abstractmethod
    def rows(self, process) -> tuple[list[float], list[Coefficients]]:
        """(grid times, one typed coefficient row per step), in float64 on the host."""

    def build_plan(self, process) -> Plan:
        ts, rows = self.rows(process)
        return Plan(torch.tensor(ts, dtype=torch.float64), rows=tuple(rows))

    def prepare(self, x, plan, process, denoiser, cond):
        """Teleport the prior sample from t_max to the grid's first time (``teleports()``; an
        explicit grid is used as given)."""
        if self.teleports(process) and not self.explicit_grid(process):
            y = endpoint(process, cond, x)
            return teleport_state(x, process, denoiser.buffers, float(process.t_max), float(plan.t[0]), y)
        return x

    def init_carry(self, plan, x, process, cond) -> tuple:
        """(y, m_1, ..., m_k): the condition endpoint (None when b = 0) and ``history`` zeros for
        the earlier model outputs of multistep methods (their coefficients are 0 until filled)."""
        return (endpoint(process, cond, x),) + tuple(torch.zeros_like(x) for _ in range(self.history))

    def noise(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Fresh standard normal noise, batch-invariant with per-sample generators."""
        return randn_like(x, generator)

    # -- CFG++ equivalence --------------------------------------------------------------------
    #: which model output the update's history terms use: "x0" (data) or "eps" (noise)
    kind: str = "x0"

    def renoise_ratio(self, process):
        """(grid, r) for CFG++ ``equivalent_w``: lambda_i = w (1 - r_i) gives each step the same
        total weight on the guidance direction as a CFG step at w, summed over the current and
        the carried estimates (assuming the direction changes slowly between steps).

        With the step z_t = wz z_s + sum_j d_j D_j and a re-noising prediction (x0_lam, eps_u):
        the current x0 enters with A_i = wz a_s + d0 (data form) or wz a_s (noise form). Data
        form: CFG puts w sum_j d_j on the direction, CFG++ l_i A_i + sum_{j>=1} d_j l_{i-j}, so
        l_i = (sum_j d_j - sum_{j>=1} d_j l_{i-j}) / A_i. Noise form (history holds eps_u):
        CFG puts -w sum_j d_j a_{i-j} / c_{i-j}, so l_i = -sum_j d_j a_{i-j} / c_{i-j} / A_i.
        DDIM: r_i = (c_t / a_t) / (c_s / a_s), exact. Only for one evaluation per step (multistep /
        DDIM); None otherwise."""
        plan = self.build_plan(process)
        rows = plan.rows
        if not all(isinstance(row, LinearStep) for row in rows) or self.expected_nfe() != plan.num_steps:
            return None
        ell: list[float] = []
        for i, row in enumerate(rows):
            ds = [row.d0] + [getattr(row, k) for k in ("d1", "d2") if k in type(row).numeric()]
            if self.kind == "x0":
                a = row.wz * row.a + row.d0
                hist = sum(d * ell[i - j] for j, d in enumerate(ds) if j >= 1 and i - j >= 0)
                ell.append((sum(ds) - hist) / a if a != 0 else 1.0)
            else:
                a = row.wz * row.a
                g = -sum(d * rows[i - j].a / rows[i - j].c for j, d in enumerate(ds) if i - j >= 0)
                ell.append(g / a if a != 0 else 1.0)
        return plan.t, torch.tensor([1.0 - v for v in ell], dtype=torch.float64)
