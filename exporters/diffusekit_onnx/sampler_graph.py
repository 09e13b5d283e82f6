"""``SamplerGraph``: a whole fixed-step deterministic sampler as one traceable module.

For a :class:`~diffusekit.sampler.TabulatedSampler` (every Gaussian solver) the graph runs the
sampler's own ``step_row`` -- the same function as its Python loop -- over the rows of
``Coefficients.table(plan.rows)``: with ``loop="scan"`` under ``torch._higher_order_ops.scan``
(one ONNX ``Scan`` node per run of rows with equal static fields; a run of one row is a single
unrolled step), with ``loop="unroll"`` one copy per step. Any other deterministic
:class:`~diffusekit.sampler.StepSampler` is unrolled through its ``prepare`` / ``init_carry`` /
``step`` / ``finalize``. Nothing here knows a solver by name or reads a sampler's private state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffusekit.denoiser import Denoiser
from diffusekit.errors import CompatibilityError
from diffusekit.parameterization import Prediction
from diffusekit.sampler import StepSampler, TabulatedSampler

from .graphs import DenoiserGraph


def per_sample(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A 0-d row entry as a (B,) time without using the (symbolic) batch size (an ``expand`` with
    the symbolic batch inside a scan body fails)."""
    return value + torch.zeros_like(x.reshape(x.shape[0], -1)[:, 0])


def runs(keys: list[tuple]) -> list[tuple[int, int]]:
    """[start, stop) index ranges of consecutive equal keys."""
    out, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out.append((start, i))
            start = i
    return out


class _RawNetwork(nn.Module):
    """``network(x, t, cond)`` = the (guided) raw output of a DenoiserGraph (cond is raw)."""

    def __init__(self, den: DenoiserGraph):
        super().__init__()
        self.den = den

    def forward(self, x, t, cond=None):
        return self.den.raw(x, t, cond)


class SamplerGraph(nn.Module):
    """``(x_init[, cond]) -> sample`` for a deterministic step sampler on its own plan."""

    def __init__(self, denoiser: DenoiserGraph, sampler: StepSampler, example: torch.Tensor, loop: str = "scan",
                 buffers: dict | None = None):
        super().__init__()
        if not isinstance(sampler, StepSampler) or sampler.stochastic:
            raise CompatibilityError(
                f"no ONNX sampler graph for {type(sampler).__name__}: sampler graphs need a deterministic "
                "fixed-step sampler (a StepSampler; e.g. ddim, dpm-solver++, deis, unipc, heun, euler)")
        self.den = denoiser
        self.sampler = sampler
        self.loop = loop
        #: the Python-side denoiser over the graph's network (guidance folded in), for prepare()
        self.denoiser = Denoiser(_RawNetwork(denoiser), denoiser.parameterization, denoiser.process, None,
                                 buffers=buffers)
        process = denoiser.process
        self.tabulated = isinstance(sampler, TabulatedSampler)
        plan = sampler.build_plan(process)
        self.steps = plan.num_steps
        if self.tabulated:
            cls = sampler.coefficients_type()
            self.row_type = cls
            self.static = [r.static_key() for r in plan.rows]
            self.register_buffer("table", cls.table(plan.rows).to(example.dtype), persistent=False)
        self.register_buffer("t_first", plan.t[:1].to(example.dtype), persistent=False)
        self.plan_ = sampler.plan(process, example)

    @property
    def nfe(self) -> int | None:
        return self.sampler.expected_nfe()

    @property
    def scan_runs(self) -> list[tuple[int, int]]:
        """The row ranges that run as one Scan each (loop="scan")."""
        return [r for r in runs(self.static) if r[1] - r[0] > 1] if self.tabulated else []

    # -- the model as the solvers see it --------------------------------------------------------
    def model(self, cond: Any):
        den = self.den

        def predict(x: torch.Tensor, t: torch.Tensor) -> Prediction:
            tt = per_sample(t, x)
            return Prediction(den.process, x, tt, cond, **{den.kind: den.raw(x, tt, cond)})

        return predict

    def _rows(self, x, carry, cond, lo: int, hi: int):
        s, model = self.sampler, self.model(cond)
        for i in range(lo, hi):
            row = self.row_type.from_row(self.table[i], self.static[i])
            x, carry, _ = s.step_row(x, row, model, None, carry)
        return x, carry

    def _scan(self, x, carry, cond, lo: int, hi: int):
        from torch._higher_order_ops.scan import scan

        s, static = self.sampler, self.static[lo]
        slots = [v is not None for v in carry]
        has_cond = cond is not None

        # the condition and the carry ride in the scan carry: a closed-over input with a symbolic
        # batch would be lifted together with its SymInt size, which scan cannot take
        def body(state, row):
            xc, rest = state[0], list(state[1:])
            cc = rest.pop() if has_cond else None
            it = iter(rest)
            sc = tuple(next(it) if used else None for used in slots)
            co = self.row_type.from_row(row, static)
            xn, cn, _ = s.step_row(xc, co, self.model(cc), None, sc)
            out = (xn,) + tuple(v.clone() for v in cn if v is not None) + ((cc.clone(),) if has_cond else ())
            return out, row[:1].clone()

        init = (x,) + tuple(v for v in carry if v is not None) + ((cond,) if has_cond else ())
        with torch.no_grad():  # inference graph: no autograd bookkeeping for int conditions
            out, _ = scan(body, init, self.table[lo:hi])
        it = iter(out[1:])
        return out[0], tuple(next(it) if used else None for used in slots)

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        s, plan, process = self.sampler, self.plan_, self.den.process
        x = s.prepare(x, plan, process, self.denoiser, cond)
        carry = s.init_carry(plan, x, process, cond)
        if not self.tabulated:
            for i in range(plan.num_steps):
                x, carry, _ = s.step(x, i, plan, self.denoiser, cond, None, carry)
            return s.finalize(x, plan, self.denoiser, cond, carry)
        for lo, hi in runs(self.static):
            if self.loop == "scan" and hi - lo > 1:
                x, carry = self._scan(x, carry, cond, lo, hi)
            else:
                x, carry = self._rows(x, carry, cond, lo, hi)
        return s.finalize(x, plan, self.denoiser, cond, carry)
