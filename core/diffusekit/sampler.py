"""Samplers, time grids and the generic step loop.

A :class:`StepSampler` compiles an immutable *plan* of per-step coefficients once for
(process, time grid, steps); a step is then ``(x, i, plan, ...) -> x`` with no host sync.
The loop tracks the first non-finite step on the device (one sync at the end) so that a NaN
mid-sampling is reported with its step index without slowing every step down.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from pydantic import Field

from .config import Component, ComponentConfig
from .errors import NonFiniteError
from .process import ForwardProcess
from .state import device_of, finite_probe, real_dtype

Callback = Callable[[dict[str, Any]], None]


class TimeGrid(Component):
    """A decreasing grid of ``steps + 1`` times from the process's t_max to its end time."""

    requires: tuple[type, ...] = ()

    @abstractmethod
    def times(self, process: ForwardProcess, steps: int) -> torch.Tensor:
        """float64 tensor of shape (steps + 1,), decreasing."""


class SamplerConfig(ComponentConfig):
    steps: int = Field(20, ge=1, le=100_000, description="number of solver steps")


class Sampler(Component):
    """Draws a state from the data distribution starting at the prior sample ``x``.

    Contract read by the fit check (:mod:`diffusekit.fit`), the pipeline and the exporters;
    every attribute has its default here.
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
    #: the update reads a prediction's x0 and eps separately (x_s = a_s x0 + c_s eps), so
    #: guidance that renoises with another eps than the one consistent with x_t (CFG++) works
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
        time grid (steps + 1,) and, for each step t_i -> t_{i+1} of x_s = a_s x0 + k eps (+ noise),
        r_i = (k_i / a_{i+1}) / (c_i / a_i) (steps,). A CFG++ step with lambda then equals a CFG
        step with w = lambda / (1 - r_i) (CFG++ ``equivalent_w`` reads it). Default: None (the
        sampler does not report it)."""
        return None

    def couples_batch(self) -> bool:
        """True when a sample depends on the other samples of its batch (an adaptive step size
        shared by the batch, batch-averaged norms), so it changes with the batch partition;
        ``dk.distributed.sample`` records it in the manifest. Default: False."""
        return False

    def required_capabilities(self) -> tuple:
        """Capabilities needed with this configuration (default: ``requires``)."""
        return self.requires

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


@dataclass(frozen=True)
class Plan:
    """Immutable per-step coefficients. ``t`` holds the step times (steps + 1,).

    For a :class:`~diffusekit.process.Product` process ``parts`` holds one plan per key
    (built from that key's component process on the shared time grid) and ``coef`` is empty.
    """

    t: torch.Tensor
    coef: dict[str, torch.Tensor] = field(default_factory=dict)
    parts: dict[str, "Plan"] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return self.t.shape[0] - 1

    def to(self, device, dtype) -> "Plan":
        return Plan(self.t.to(device=device, dtype=dtype),
                    {k: v.to(device=device, dtype=dtype) for k, v in self.coef.items()},
                    {k: p.to(device, dtype) for k, p in self.parts.items()})


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
        self.probes.append(finite_probe(x))
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
    """A fixed-step sampler over a precomputed plan."""

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

    def init_carry(self, plan: Plan, x: Any) -> Any:
        """Solver memory (e.g. previous predictions for multistep methods)."""
        return None

    @abstractmethod
    def step(self, x: Any, i: int, plan: Plan, denoiser, cond: Any, generator, carry: Any) -> tuple[Any, Any, Any]:
        """One step from plan.t[i] to plan.t[i+1]: returns (x_next, carry, prediction-or-None)."""

    def finalize(self, x: Any, plan: Plan, denoiser, cond: Any, carry: Any) -> Any:
        return x

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        plan = self.plan(process, x)
        carry = self.init_carry(plan, x)
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
