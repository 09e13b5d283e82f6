"""Samplers, time grids and the generic step loop.

A :class:`StepSampler` compiles an immutable *plan* of per-step coefficients once for
(process, time grid, steps); a step is then ``(x, i, plan, ...) -> x`` with no host sync.
The loop tracks the first non-finite step on the device (one sync at the end) so that a NaN
mid-sampling is reported with its step index without slowing every step down.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Optional, Union

import torch
from pydantic import Field

from .config import Component, ComponentConfig
from .errors import NonFiniteError
from .process import ForwardProcess
from .state import device_of, finite_probe, real_dtype

Callback = Callable[[dict[str, Any]], None]


class TimeGrid(Component, metaclass=ABCMeta):
    """A decreasing grid of ``steps + 1`` times from the process's t_max to its end time."""

    requires: tuple[type, ...] = ()

    @abstractmethod
    def times(self, process: ForwardProcess, steps: int) -> torch.Tensor:
        """float64 tensor of shape (steps + 1,), decreasing."""


class SamplerConfig(ComponentConfig):
    steps: int = Field(20, ge=1, le=100_000, description="number of solver steps")


class Sampler(Component, metaclass=ABCMeta):
    """Draws a state from the data distribution starting at the prior sample ``x``.

    Contract read by the fit check (:mod:`diffusekit.fit`), the pipeline and the exporters;
    every attribute has its default here. Abstract methods are enforced: a subclass that does not
    implement ``sample`` (or, for a :class:`StepSampler`, ``build_plan`` and ``step``) cannot be
    constructed (``TypeError`` naming the missing methods).
    """

    Config = SamplerConfig
    #: capabilities the process must have (an entry that is a tuple means "any of these")
    requires: tuple = (ForwardProcess,)
    #: capabilities the sampler cannot handle (e.g. PinnedBridge for samplers dividing by c)
    excludes: tuple = ()
    #: parameterization outputs the sampler works with (None: any)
    accepts_parameterizations: Optional[frozenset] = None
    #: runs on the per-key dict states of a Product process
    supports_product: bool = False
    #: the sampler injects fresh noise (needs a generator for reproducibility)
    stochastic: bool = False
    #: the update re-noises with the prediction's own (x0, eps) when the prediction says it
    #: carries a re-noising estimate (``Prediction.renoises``, e.g. CFG++: guided x0, unconditional
    #: eps), instead of the state x_t; guidance of that kind needs it
    renoise_eps: bool = False
    #: the sampler may serve a step from an earlier step's prediction instead of calling the
    #: denoiser (e.g. the masked ``ancestral`` sampler with ``cache=True``); guidance that
    #: replaces the state between steps (SVDD) refuses such samplers
    caches_predictions: bool = False

    def final_step_deterministic(self) -> bool:
        """True when the last step of a stochastic sampler adds no noise (it returns the step's
        mean, e.g. ``denoise_final`` of the reverse-SDE samplers). Guidance that evaluates the
        sampler's transition kernel (SMC's posterior target) reads it. Default: False."""
        return False

    def renoise_ratio(self, process: ForwardProcess) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """For ``renoise_eps`` samplers on an AdditiveGaussian process: ``(grid, r)`` with the
        time grid (steps + 1,) and per step r_i such that a CFG++ step with lambda_i = w (1 - r_i)
        puts the weight of a CFG step at w on the guidance direction (for DDIM,
        x_s = a_s x0 + k eps: r_i = (k_i / a_{i+1}) / (c_i / a_i), exact). CFG++ ``equivalent_w``
        reads it. Default: None (the sampler does not report it)."""
        return None

    def couples_batch(self) -> bool:
        """True when a sample depends on the other samples of its batch (an adaptive step size
        shared by the batch, batch-averaged norms), so it changes with the batch partition;
        ``dk.distributed.sample`` records it in the manifest. Default: False."""
        return False

    def required_capabilities(self) -> tuple:
        """Capabilities needed with this configuration (default: ``requires``)."""
        return self.requires

    def with_buffers(self, buffers: dict) -> "Sampler":
        """This sampler specialised to a pipeline's buffers (e.g. the training data's statistics
        that ``dk.train`` records, :mod:`diffusekit.datastats`): settings chosen from the data,
        such as the solvers' ``teleport="auto"``, are resolved here. ``Pipeline.sample`` and
        the exporters call it before planning. Default: ``self`` (nothing depends on data)."""
        return self

    @property
    def steps(self) -> int | None:
        """The configured number of steps (None for samplers without one)."""
        return self.config.steps if isinstance(self.config, SamplerConfig) else None

    def expected_nfe(self) -> int | None:
        """Network evaluations one call will use (None if adaptive)."""
        return self.steps

    @abstractmethod
    def sample(self, denoiser, process: ForwardProcess, x: Any, cond: Any = None, generator=None,
               callback: Optional[Callback] = None) -> Any:
        """Integrate from the prior state ``x`` to data."""


Scalar = Union[float, torch.Tensor]
_NUMERIC: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True)
class Coefficients:
    """Typed coefficients of one step of a tabulated :class:`StepSampler` (a frozen dataclass per
    solver; every field is a float).

    The same step function runs on three kinds of rows: host floats (the Python loop; the fields
    named in ``TIMES`` are then 0-d tensors on the state's device), 0-d tensor slices of the
    stacked table (the body of an ONNX ``Scan``), or one row per step (an unrolled graph). Fields
    named in ``STATIC`` fix the step's structure (e.g. whether Heun takes its second evaluation);
    they stay Python values, and consecutive rows with equal static values form one ``Scan``.
    """

    TIMES: ClassVar[tuple[str, ...]] = ()
    STATIC: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def numeric(cls) -> tuple[str, ...]:
        """Names of the fields stored in the table (all but the static ones), in order."""
        names = _NUMERIC.get(cls)
        if names is None:  # computed once per class (outside any traced graph)
            names = _NUMERIC[cls] = tuple(f.name for f in fields(cls) if f.name not in cls.STATIC)
        return names

    def static_key(self) -> tuple:
        return tuple(getattr(self, k) for k in self.STATIC)

    @classmethod
    def table(cls, rows) -> torch.Tensor:
        """float64 tensor (len(rows), K) of the numeric fields."""
        names = cls.numeric()
        return torch.tensor([[float(getattr(r, k)) for k in names] for r in rows], dtype=torch.float64)

    @classmethod
    def from_row(cls, row: torch.Tensor, static: tuple = ()) -> "Coefficients":
        """Coefficients whose numeric fields are the 0-d slices of ``row`` (a Scan body's row)."""
        vals = {k: row[j] for j, k in enumerate(cls.numeric())}
        vals.update(zip(cls.STATIC, static))
        return cls(**vals)

    def on(self, device, dtype) -> "Coefficients":
        """This row for the Python loop: its ``TIMES`` fields as 0-d tensors on the state's device."""
        return replace(self, **{k: torch.tensor(float(getattr(self, k)), device=device, dtype=dtype)
                                for k in self.TIMES})


@dataclass(frozen=True)
class Plan:
    """Immutable per-step coefficients. ``t`` holds the step times (steps + 1,).

    ``coef`` holds named per-step coefficient vectors; tabulated samplers hold one typed
    :class:`Coefficients` row per step in ``rows`` instead. For a
    :class:`~diffusekit.process.Product` process ``parts`` holds one plan per key (built from that
    key's component process on the shared time grid) and ``coef`` is empty.
    """

    t: torch.Tensor
    coef: dict[str, torch.Tensor] = field(default_factory=dict)
    parts: dict[str, "Plan"] = field(default_factory=dict)
    rows: tuple = ()

    @property
    def num_steps(self) -> int:
        return self.t.shape[0] - 1

    def to(self, device, dtype) -> "Plan":
        return Plan(self.t.to(device=device, dtype=dtype),
                    {k: v.to(device=device, dtype=dtype) for k, v in self.coef.items()},
                    {k: p.to(device, dtype) for k, p in self.parts.items()},
                    tuple(r.on(device, dtype) for r in self.rows))


def per_component(process, fn: Callable[..., Any], x: Any, *states: Any, plan: Optional[Plan] = None) -> Any:
    """``fn(process_k, x_k, *states_k[, plan_k])`` per key of a Product process, or once otherwise.

    The states may be dicts with the keys of ``x`` or shared values. This is how a sampler
    written for one Tensor state runs on the dict state of a Product: one joint network call
    gives a per-key prediction, each key then takes its own component's update."""
    from .process import Product

    if not isinstance(process, Product):
        return fn(process, x, *states, *(() if plan is None else (plan,)))
    out = {}
    for k, p in process.components.items():
        parts = [s[k] if isinstance(s, dict) else s for s in states]
        extra = () if plan is None else (plan.parts[k],)
        out[k] = fn(p, x[k], *parts, *extra)
    return out


class FiniteTracker:
    """Records the first step whose state is non-finite, without a host sync per step."""

    def __init__(self, device) -> None:
        self.device = device
        self.probes: list[torch.Tensor] = []
        self.steps: list[int] = []

    def update(self, x: Any, i: int) -> None:
        # One reduction per step: NaN / Inf propagate through the sum, so it is finite iff the
        # state is (half precision and integer states are summed in float32); checked in check().
        fast = torch.is_tensor(x) and x.dtype in (torch.float32, torch.float64)
        self.probes.append(x.sum() if fast else finite_probe(x))
        self.steps.append(i)

    @property
    def first_bad(self) -> torch.Tensor:
        """Index of the first step whose state was non-finite, -1 if none (a device tensor)."""
        if not self.probes:
            return torch.full((), -1, dtype=torch.long, device=self.device)
        bad = ~torch.isfinite(torch.stack(self.probes))
        steps = torch.tensor(self.steps, dtype=torch.long, device=bad.device)
        big = torch.full_like(steps, torch.iinfo(torch.long).max)
        first = torch.where(bad, steps, big).min()
        return torch.where(bad.any(), first, torch.full_like(first, -1))

    def check(self, what: str = "sampling") -> None:
        bad = int(self.first_bad)
        if bad >= 0:
            raise NonFiniteError(
                f"{what}: the state became NaN/Inf at step {bad}; check the network output, "
                "lower the step size / raise steps, or check the time grid's end point",
                step=bad,
            )


class StepSampler(Sampler):
    """A fixed-step sampler over a precomputed plan.

    ``sample`` = ``plan`` -> ``prepare`` (map the prior sample to the plan's first time) ->
    ``init_carry`` -> ``step`` per step -> ``finalize``. Exporters run the same hooks.
    """

    def plan(self, process: ForwardProcess, x: Any) -> Plan:
        """Build (and cache) the plan for this process and state's device/dtype.

        For a Product process: one plan per component on a shared time grid."""
        from .errors import CompatibilityError
        from .process import Product

        dtype, device = real_dtype(x), device_of(x)
        key = (id(process), device, dtype)
        cache = self.__dict__.setdefault("_plans", {})
        if key not in cache:
            cache.clear()
            if isinstance(process, Product):
                parts = {k: self.build_plan(p) for k, p in process.components.items()}
                grids = list(parts.values())
                if any(g.t.shape != grids[0].t.shape or not torch.allclose(g.t, grids[0].t) for g in grids):
                    raise CompatibilityError(
                        f"{type(self).__name__}: the components of {type(process).__name__} give different "
                        "time grids; give them the same time range (t_min, t_max)")
                plan = Plan(grids[0].t, {}, parts)
            else:
                plan = self.build_plan(process)
            cache[key] = plan.to(device, dtype)
        return cache[key]

    @abstractmethod
    def build_plan(self, process: ForwardProcess) -> Plan:
        """Coefficients in float64 on the CPU; moved to the state's device once."""

    def prepare(self, x: Any, plan: Plan, process: ForwardProcess, denoiser, cond: Any) -> Any:
        """Map the prior sample (at the process's t_max) to the plan's first time ``plan.t[0]``
        (e.g. analytical teleportation); default: unchanged."""
        return x

    def init_carry(self, plan: Plan, x: Any, process: ForwardProcess, cond: Any) -> Any:
        """Solver memory (e.g. the condition endpoint and previous predictions of multistep
        methods): a tuple of tensors (or None entries) for tabulated samplers, anything otherwise."""
        return None

    @abstractmethod
    def step(self, x: Any, i: int, plan: Plan, denoiser, cond: Any, generator, carry: Any) -> tuple[Any, Any, Any]:
        """One step from plan.t[i] to plan.t[i+1]: returns (x_next, carry, prediction-or-None)."""

    def finalize(self, x: Any, plan: Plan, denoiser, cond: Any, carry: Any) -> Any:
        return x

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        plan = self.plan(process, x)
        x = self.prepare(x, plan, process, denoiser, cond)
        carry = self.init_carry(plan, x, process, cond)
        tracker = FiniteTracker(device_of(x))
        for i in range(plan.num_steps):
            x, carry, pred = self.step(x, i, plan, denoiser, cond, generator, carry)
            tracker.update(x, i)
            if callback is not None:
                out = callback({"i": i, "t": plan.t[i + 1], "x": x, "prediction": pred, "generator": generator})
                if out is not None:  # a callback (e.g. inpainting guidance) may replace the state
                    x = out
        x = self.finalize(x, plan, denoiser, cond, carry)
        tracker.update(x, plan.num_steps - 1)
        tracker.check(type(self).__name__)
        return x


Model = Callable[[Any, torch.Tensor], Any]
"""``model(x, t) -> Prediction`` with ``t`` a 0-d time (a plan row's time field)."""


class TabulatedSampler(StepSampler):
    """A :class:`StepSampler` whose step is ``step_row`` over one typed :class:`Coefficients` row
    (``plan.rows[i]``) and whose carry is a tuple of tensors (or None entries).

    The same ``step_row`` runs in the Python loop (host-float rows), as the body of an ONNX
    ``Scan`` over ``Coefficients.table(plan.rows)`` and in an unrolled graph; the exporters read
    only these declared hooks. Deterministic configurations are exportable.
    """

    @abstractmethod
    def step_row(self, x: Any, row: Coefficients, model: Model, generator, carry: tuple) -> tuple[Any, tuple, Any]:
        """One step with the coefficients ``row``: returns (x_next, carry, prediction)."""

    @abstractmethod
    def coefficients_type(self) -> type[Coefficients]:
        """The :class:`Coefficients` dataclass of this sampler's rows (the exporter rebuilds Scan
        rows with it)."""

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        n = x.shape[0]
        return self.step_row(x, plan.rows[i], lambda xx, t: denoiser(xx, t.expand(n), cond), generator, carry)
