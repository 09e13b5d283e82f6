"""Denoiser = network + parameterization + process (+ conditioner): (x_t, t, cond) -> Prediction."""

from __future__ import annotations

from typing import Any

import torch

from .errors import ShapeError
from .parameterization import Parameterization, Prediction
from .process import ForwardProcess


def batch_size(x: Any) -> int:
    if torch.is_tensor(x):
        return x.shape[0]
    return next(iter(x.values())).shape[0]


def per_sample_time(t: Any, x: Any) -> torch.Tensor:
    """Broadcast a scalar or (B,) time to a float tensor of shape (B,) on x's device."""
    ref = x if torch.is_tensor(x) else next(iter(x.values()))
    n = ref.shape[0]
    dtype = ref.real.dtype if ref.is_floating_point() or ref.is_complex() else torch.float32
    t = torch.as_tensor(t, device=ref.device, dtype=dtype if not torch.is_tensor(t) else None)
    if not t.is_floating_point():
        t = t.to(dtype)
    if t.ndim == 0:
        return t.expand(n)
    if t.shape != (n,):
        raise ShapeError(f"t: expected a scalar or shape ({n},), got {tuple(t.shape)}")
    return t


class Denoiser:
    """Callable ``denoiser(x_t, t, cond) -> Prediction`` that counts network evaluations."""

    def __init__(self, network, parameterization: Parameterization, process: ForwardProcess,
                 conditioner=None):
        self.network = network
        self.parameterization = parameterization
        self.process = process
        self.conditioner = conditioner
        self.nfe = 0
        #: the pipeline's buffers (e.g. Gaussian data statistics for teleporting samplers)
        self.buffers: dict = {}

    def encode(self, cond: Any) -> Any:
        if cond is None or self.conditioner is None:
            return cond
        return self.conditioner(cond)

    def __call__(self, x_t: Any, t: Any, cond: Any = None) -> Prediction:
        t = per_sample_time(t, x_t)
        self.nfe += 1
        return self.parameterization.predict(self.network, self.process, x_t, t, cond, self.encode(cond))

    def reset_nfe(self) -> None:
        self.nfe = 0


class DenoiserWrapper:
    """Base for guidance transforms: forwards everything to the wrapped denoiser."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def process(self):
        return self.inner.process

    @property
    def nfe(self) -> int:
        return self.inner.nfe

    def reset_nfe(self) -> None:
        self.inner.reset_nfe()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x_t, t, cond=None) -> Prediction:
        return self.inner(x_t, t, cond)
