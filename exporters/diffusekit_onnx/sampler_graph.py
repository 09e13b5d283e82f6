"""``SamplerGraph``: a whole fixed-step deterministic sampler as one traceable module.

``loop="scan"`` runs the step kernel of :mod:`diffusekit_onnx.solvers` under
``torch._higher_order_ops.scan`` (one ONNX ``Scan`` node, constant graph size in the number
of steps); ``loop="unroll"`` runs the same kernel in a Python loop (one copy per step).
:class:`UnrolledSampler` traces any registered deterministic ``StepSampler``'s own ``step``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from diffusekit.denoiser import Denoiser
from diffusekit.parameterization import Prediction

from . import solvers
from .graphs import DenoiserGraph


class SamplerGraph(nn.Module):
    """``(x_init[, cond]) -> sample`` for a kernel solver on a fixed grid."""

    def __init__(self, denoiser: DenoiserGraph, method: str, times: torch.Tensor, loop: str = "scan",
                 lower_order_final: bool = True, denoise_final: bool = False):
        super().__init__()
        self.den = denoiser
        self.method = method
        self.loop = loop
        self.denoise_final = denoise_final
        self.steps = int(times.shape[0]) - 1
        tab = solvers.tables(method, denoiser.process, times, lower_order_final)
        self.register_buffer("rows", tab["rows"].to(torch.float32), persistent=False)
        self.register_buffer("final", tab.get("final", torch.zeros(0, dtype=torch.float64)).to(torch.float32),
                             persistent=False)
        self.register_buffer("t_end", times[-1:].to(torch.float32), persistent=False)

    @property
    def nfe(self) -> int:
        return solvers.expected_nfe(self.method, self.steps) + int(self.denoise_final)

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Any):
        raw = self.den.raw(x, t, cond)
        pred = Prediction(self.den.process, x, t, cond, **{self.den.kind: raw})
        y = self.den.process.endpoint(cond, x)
        return pred.x0, pred.eps, y

    def _step(self, method, x, prev, row, cond):
        return solvers.step(method, self.predict, x, prev, row, cond)

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        prev = torch.zeros_like(x)
        if self.rows.shape[0] > 0:
            if self.loop == "scan":
                from torch._higher_order_ops.scan import scan

                # the condition rides in the carry: a closed-over input with a symbolic batch
                # would be lifted together with its SymInt size, which scan cannot take
                def body(carry, row):
                    xc, pc = carry[0], carry[1]
                    cc = carry[2] if len(carry) > 2 else None
                    xn, x0 = self._step(self.method, xc, pc, row, cc)
                    return (xn, x0.clone()) + ((cc.clone(),) if cc is not None else ()), row[:1].clone()

                init = (x, prev) + ((cond,) if cond is not None else ())
                with torch.no_grad():  # inference graph: no autograd bookkeeping for int conditions
                    out, _ = scan(body, init, self.rows)
                x, prev = out[0], out[1]
            else:
                for i in range(self.rows.shape[0]):
                    x, prev = self._step(self.method, x, prev, self.rows[i], cond)
        if self.final.numel():  # heun: the Euler last step
            x, prev = self._step("euler", x, prev, self.final, cond)
        if self.denoise_final:
            x = self.predict(x, solvers._per_sample(self.t_end[0], x), cond)[0]
        return x


@contextlib.contextmanager
def suspended_finite_check():
    """Trace a sampler's own ``sample()``: its end-of-loop NaN check (a host sync) is skipped.

    The exported graph is verified against the Python sampler instead, and the onnxruntime
    outputs are checked for NaN/Inf.
    """
    from diffusekit.sampler import FiniteTracker

    original = FiniteTracker.check
    FiniteTracker.check = lambda self, what="sampling": None  # type: ignore[method-assign]
    try:
        yield
    finally:
        FiniteTracker.check = original  # type: ignore[method-assign]


class _RawNetwork(nn.Module):
    """``network(x, t, cond)`` = the (guided) raw output of a DenoiserGraph (cond is raw)."""

    def __init__(self, den: DenoiserGraph):
        super().__init__()
        self.den = den

    def forward(self, x, t, cond=None):
        return self.den.raw(x, t, cond)


class UnrolledSampler(nn.Module):
    """Traces a registered deterministic :class:`~diffusekit.sampler.StepSampler` step by step
    (its ``plan``, ``init_carry``, ``step`` and ``finalize``; no finite-check host sync)."""

    def __init__(self, denoiser: DenoiserGraph, sampler, example: torch.Tensor, cond: Any = None):
        super().__init__()
        self.den = denoiser
        self.sampler = sampler
        self.denoiser = Denoiser(_RawNetwork(denoiser), denoiser.parameterization, denoiser.process, None)
        self.plan_ = sampler.plan(denoiser.process, example)
        self.steps = self.plan_.num_steps
        self.via = "step"
        errors = []
        for via in ("step", "sample"):  # dry runs: the StepSampler contract, else its own sample()
            self.via = via
            try:
                with torch.no_grad():
                    self.forward(example, cond)
                break
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{via}: {type(exc).__name__}: {exc}")
        else:
            from diffusekit.errors import CompatibilityError

            raise CompatibilityError(
                f"{type(sampler).__name__} cannot be unrolled ({'; '.join(errors)}); export one of the Scan "
                "kernels instead: method='ddim' | 'dpm-solver++' | 'euler' | 'heun'")

    def forward(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        s, plan = self.sampler, self.plan_
        if self.via == "sample":
            with suspended_finite_check():
                return s.sample(self.denoiser, self.den.process, x, cond)
        carry = s.init_carry(plan, x)
        for i in range(plan.num_steps):
            x, carry, _ = s.step(x, i, plan, self.denoiser, cond, None, carry)
        return s.finalize(x, plan, self.denoiser, cond, carry)
