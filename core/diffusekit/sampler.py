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
    """Draws a state from the data distribution starting at the prior sample ``x``."""

    Config = SamplerConfig
    #: capabilities the process must have
    requires: tuple[type, ...] = (ForwardProcess,)
    #: the sampler injects fresh noise (needs a generator for reproducibility)
    stochastic: bool = False

    def expected_nfe(self) -> int | None:
        """Network evaluations one call will use (None if adaptive)."""
        return getattr(self.config, "steps", None)

    @abstractmethod
    def sample(self, denoiser, process: ForwardProcess, x: Any, cond: Any = None, generator=None,
               callback: Optional[Callback] = None) -> Any:
        """Integrate from the prior state ``x`` to data."""


@dataclass(frozen=True)
class Plan:
    """Immutable per-step coefficients. ``t`` holds the step times (steps + 1,)."""

    t: torch.Tensor
    coef: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return self.t.shape[0] - 1

    def to(self, device, dtype) -> "Plan":
        return Plan(self.t.to(device=device, dtype=dtype),
                    {k: v.to(device=device, dtype=dtype) for k, v in self.coef.items()})


class FiniteTracker:
    """Records the first step whose state is non-finite, without a host sync per step."""

    def __init__(self, device) -> None:
        self.device = device
        self.probes: list[torch.Tensor] = []
        self.steps: list[int] = []

    def update(self, x: Any, i: int) -> None:
        # One reduction per step: NaN / Inf propagate through the sum, so it is finite iff the
        # state is (half precision and integer states are summed in float32); checked in check().
        tensors = [x] if torch.is_tensor(x) else list(x.values())
        probe = None
        for v in tensors:
            wide = v.is_complex() or v.dtype in (torch.float32, torch.float64)
            s = v.sum() if wide else v.sum(dtype=torch.float32)
            probe = s if probe is None else probe + s
        self.probes.append(probe)
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
        """Build (and cache) the plan for this process and state's device/dtype."""
        ref = x if torch.is_tensor(x) else next(iter(x.values()))
        dtype = ref.real.dtype if (ref.is_floating_point() or ref.is_complex()) else torch.float32
        key = (id(process), ref.device, dtype)
        cache = self.__dict__.setdefault("_plans", {})
        if key not in cache:
            cache.clear()
            cache[key] = self.build_plan(process).to(ref.device, dtype)
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
        tracker = FiniteTracker(x.device if torch.is_tensor(x) else next(iter(x.values())).device)
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
