"""Denoiser = model (network + conditioner) + parameterization + process:
``(x_t, t, cond) -> Prediction``."""

from __future__ import annotations

from typing import Any

import torch

from . import state as st
from .errors import ShapeError
from .parameterization import Parameterization, Prediction
from .process import ForwardProcess


def batch_size(x: Any) -> int:
    return st.batch_size(x)


def per_sample_time(t: Any, x: Any) -> torch.Tensor:
    """Broadcast a scalar or (B,) time to a float tensor of shape (B,) on x's device."""
    if (torch.is_tensor(t) and torch.is_tensor(x) and t.ndim == 1 and t.shape[0] == x.shape[0]
            and t.is_floating_point()):
        return t  # the samplers' per-step call: already a (B,) float time (no host work)
    ref = st.first_leaf(x)
    n = ref.shape[0]
    dtype = st.real_dtype(x)
    t = torch.as_tensor(t, device=ref.device, dtype=dtype if not torch.is_tensor(t) else None)
    if not t.is_floating_point():
        t = t.to(dtype)
    if t.ndim == 0:
        return t.expand(n)
    if t.shape != (n,):
        raise ShapeError(f"t: expected a scalar or shape ({n},), got {tuple(t.shape)}")
    return t


class Denoiser:
    """Callable ``denoiser(x_t, t, cond) -> Prediction`` that counts network evaluations.

    The network is called with the *raw* condition through a
    :class:`~diffusekit.network.PipelineModule`, which encodes it with the conditioner. The
    pipeline passes its own module (``encodes=True``); a bare network and a conditioner given
    here are combined into one. ``conditioner`` is kept for guidance that needs the null
    condition.
    """

    def __init__(self, network, parameterization: Parameterization, process: ForwardProcess,
                 conditioner=None, buffers: dict | None = None, encodes: bool = False):
        if conditioner is not None and not encodes:
            from .network import PipelineModule

            network = PipelineModule(network, conditioner)
        self.network = network
        self.parameterization = parameterization
        self.process = process
        self.conditioner = conditioner
        self.nfe = 0
        #: the pipeline's buffers (e.g. Gaussian data statistics for teleporting samplers)
        self.buffers: dict = buffers if buffers is not None else {}
        self._output_checked = False

    def __call__(self, x_t: Any, t: Any, cond: Any = None) -> Prediction:
        t = per_sample_time(t, x_t)
        self.nfe += 1
        network = self.network if self._output_checked else self._first_call
        return self.parameterization.predict(network, self.process, x_t, t, cond, cond)

    def _first_call(self, x: Any, t: torch.Tensor, cond: Any = None) -> Any:
        """The first network evaluation: its output's structure, shape and dtype are checked
        once (parameterization.check_output), so a broadcasting or mistyped output fails here
        instead of training or sampling silently."""
        raw = self.network(x, t, cond)
        self.parameterization.check_output(raw, x)
        self._output_checked = True
        return raw

    def reset_nfe(self) -> None:
        self.nfe = 0


class DenoiserWrapper:
    """Base for guidance transforms: forwards the declared denoiser interface to ``inner``.

    ``batch_factor``: rows per sample of one inner call (2 for a batched CFG pair)."""

    batch_factor: int = 1

    def __init__(self, inner):
        self.inner = inner

    @property
    def process(self):
        return self.inner.process

    @property
    def parameterization(self):
        return self.inner.parameterization

    @property
    def network(self):
        return self.inner.network

    @property
    def conditioner(self):
        return self.inner.conditioner

    @property
    def buffers(self) -> dict:
        return self.inner.buffers

    @property
    def nfe(self) -> int:
        return self.inner.nfe

    def reset_nfe(self) -> None:
        self.inner.reset_nfe()

    def __call__(self, x_t, t, cond=None) -> Prediction:
        return self.inner(x_t, t, cond)
