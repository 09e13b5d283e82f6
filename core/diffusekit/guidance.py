"""Guidance: prediction transforms (wrap a denoiser) and per-step hooks.

A guidance component may

* ``wrap(denoiser, conditioner)`` to return a new denoiser (CFG, classifier, DPS), and/or
* implement ``on_step(x, info)`` to modify the state after each sampler step (inpainting
  replacement, SMC resampling, SVDD selection).

Contract (every hook the core reads is declared here with its default):

* ``requires`` / ``excludes``: process capabilities needed / refused (as for samplers);
* ``needs_grad``: keep autograd on during sampling (classifier guidance, DPS);
* ``check_fit(fit)``: raise ``CompatibilityError`` when the guidance cannot work with the
  components in ``fit`` (a :class:`diffusekit.fit.Fit`: process, parameterization, sampler,
  conditioner), naming what would fit. It must not change the guidance object: the same
  check runs at construction, for ``sample(sampler=...)`` and at load;
* ``bind(cond, fit)``: called once per ``Pipeline.sample``; returns a *bound copy* holding
  whatever the call needs (the condition, the sampler's step count, a fresh generator). The
  shared object configured by the user is never mutated, so two pipelines (or two threads)
  sharing one guidance object do not interfere;
* ``couples_batch``: the samples of one ``Pipeline.sample`` batch interact (SMC resampling,
  SVDD selection), so a sample depends on the batch it was drawn in; ``dk.distributed.sample``
  records it in the manifest and warns (shards are whole batches, so results stay exact across
  world sizes for a fixed batch size);
* ``foldable_cfg``: the guidance is a classifier-free mix eps_u + w (eps_c - eps_u) of one
  batched conditional / unconditional call (``scale`` is w), which an exporter may fold into
  the graph.

Solver-aware guidance contract (CFG++): a guided :class:`~diffusekit.parameterization.Prediction`
may carry ``x0`` (the guided denoised estimate) and ``eps`` (the noise estimate used to renoise)
that are deliberately *not* consistent with x_t. Samplers whose update reads them separately in
the DDIM form x_s = a_s x0 + c_s eps (+ noise) declare ``renoise_eps = True``
(:class:`diffusekit.sampler.Sampler`); guidance that relies on it refuses other samplers in
``check_fit``.

NFE: wrappers count through the inner :class:`~diffusekit.denoiser.Denoiser`; a batched CFG
call on a doubled batch (2B rows) is one network evaluation.
"""

from __future__ import annotations

import torch

import copy
from typing import Any, Optional

from .config import Component


def cfg_mix(uncond: torch.Tensor, cond: torch.Tensor, scale: float, logits: bool = False) -> torch.Tensor:
    """The classifier-free guidance mix u + w (c - u) (Ho & Salimans 2022, eq. 6) of an
    unconditional and a conditional output: the one copy used by the CFG denoiser and by the
    exporters that fold CFG into a graph. With ``logits`` it mixes log-probabilities (as CFG does
    for discrete models); entries that are -inf in either (SUBS: tokens that cannot occur) stay
    -inf instead of becoming NaN."""
    if not logits:
        return uncond + scale * (cond - uncond)
    lu, lc = torch.log_softmax(uncond, -1), torch.log_softmax(cond, -1)
    finite = torch.isfinite(lu) & torch.isfinite(lc)
    return torch.where(finite, lu + scale * (lc - lu), torch.minimum(lu, lc))


class Guidance(Component):
    #: process capabilities this guidance needs (a tuple entry that is a tuple means "any of")
    requires: tuple = ()
    #: process capabilities it cannot handle
    excludes: tuple = ()
    #: keep autograd enabled during sampling
    needs_grad: bool = False
    #: works on dict states of a Product process (per-key predictions)
    supports_product: bool = False
    #: samples of one batch interact (particles), so results depend on the batch partition
    couples_batch: bool = False
    #: a classifier-free mix of one batched pair of calls with weight ``scale`` (foldable on export)
    foldable_cfg: bool = False
    #: the guidance weight w of a ``foldable_cfg`` guidance (None for other guidance)
    scale: Optional[float] = None

    def wrap(self, denoiser, conditioner=None):
        """Return the guided denoiser (default: unchanged)."""
        return denoiser

    def on_step(self, x: Any, info: dict[str, Any]) -> Any:
        """Modify the state after a sampler step (default: unchanged)."""
        return x

    def has_step_hook(self) -> bool:
        """True when :meth:`on_step` is overridden (the pipeline then calls it every step)."""
        return type(self).on_step is not Guidance.on_step

    def check_fit(self, fit: Any) -> None:
        """Raise ``CompatibilityError`` if this guidance does not fit ``fit`` (default: fits).

        Must not modify ``self``."""

    def bind(self, cond: Any, fit: Any) -> "Guidance":
        """A copy of this guidance bound to one ``Pipeline.sample`` call (default: a shallow copy).

        Subclasses override :meth:`bound` to set per-call state on the copy."""
        out = copy.copy(self)
        out.bound(cond, fit)
        return out

    def bound(self, cond: Any, fit: Any) -> None:
        """Set per-call state on a fresh copy (called by :meth:`bind`; default: nothing)."""
