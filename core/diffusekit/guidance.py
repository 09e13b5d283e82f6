"""Guidance: prediction transforms (wrap a denoiser) and per-step hooks.

A guidance component may

* ``wrap(denoiser, conditioner)`` to return a new denoiser (CFG, classifier, DPS), and/or
* implement ``on_step(x, info)`` to modify the state after each sampler step (inpainting
  replacement, SMC resampling, SVDD selection).

``requires`` lists process capabilities; ``needs_grad`` asks the pipeline to keep autograd
on during sampling (classifier guidance, DPS).
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

    def bind(self, cond: Any) -> None:
        """Called once per ``Pipeline.sample`` with the raw condition."""
