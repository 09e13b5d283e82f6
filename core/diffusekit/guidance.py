"""Guidance: prediction transforms (wrap a denoiser) and per-step hooks.

A guidance component may

* ``wrap(denoiser, conditioner)`` to return a new denoiser (CFG, classifier, DPS), and/or
* implement ``on_step(x, info)`` to modify the state after each sampler step (inpainting
  replacement, SMC resampling, SVDD selection).

``requires`` lists process capabilities; ``needs_grad`` asks the pipeline to keep autograd
on during sampling (classifier guidance, DPS). ``check_fit(pipe)`` (optional) is called by
``Pipeline.check_fit`` and raises ``CompatibilityError`` when the guidance cannot work with the
pipeline's sampler / conditioner (naming what would fit).

Solver-aware guidance contract (CFG++): a guided :class:`~diffusekit.parameterization.Prediction`
may carry ``x0`` (the guided denoised estimate) and ``eps`` (the noise estimate used to renoise)
that are deliberately *not* consistent with x_t. Samplers whose update reads them separately in
the DDIM form x_s = a_s x0 + c_s eps (+ noise) declare the class attribute ``renoise_eps = True``;
guidance that relies on it refuses other samplers in ``check_fit``.

NFE: wrappers count through the inner :class:`~diffusekit.denoiser.Denoiser`; a batched CFG
call on a doubled batch (2B rows) is one network evaluation (wrappers expose ``batch_factor``).
"""

from __future__ import annotations

from typing import Any

from .config import Component


class Guidance(Component):
    requires: tuple[type, ...] = ()
    needs_grad: bool = False
    #: number of extra network calls per denoiser call (honest NFE accounting is automatic)
    def wrap(self, denoiser, conditioner=None):
        return denoiser

    def on_step(self, x: Any, info: dict[str, Any]) -> Any:
        return x

    def check_fit(self, pipe: Any) -> None:
        """Raise ``CompatibilityError`` if this guidance does not fit ``pipe`` (default: fits)."""

    def bind(self, cond: Any) -> None:
        """Called once per ``Pipeline.sample`` with the raw condition."""
