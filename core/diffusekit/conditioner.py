"""Conditioners: raw conditions (labels, arrays, noisy audio) -> network inputs ``cond``.

They also provide the null condition and training-time dropout used for classifier-free
guidance. A conditioner may hold parameters (it is a ``torch.nn.Module``).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from .config import Component, ComponentConfig
from .random import GeneratorLike, rand


class ConditionerConfig(ComponentConfig):
    """Base of conditioner configs: every conditioner has a CFG dropout probability."""

    dropout: float = Field(0.0, ge=0.0, lt=1.0,
                           description="training-time probability of replacing a condition by the null one (CFG)")


class Conditioner(nn.Module, Component):
    """Base conditioner: identity encoding, no null condition.

    Subclass configs derive from :class:`ConditionerConfig` (``dropout`` is read by :meth:`drop`);
    a config that does not is treated as ``dropout = 0``."""

    Config = ConditionerConfig

    def __init__(self, **params: Any) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, **params)

    def forward(self, cond: Any) -> Any:  # noqa: D401 - raw -> network input
        return cond

    def null(self, cond: Any) -> Any:
        """The null (unconditional) raw condition with the batch shape of ``cond``."""
        raise NotImplementedError(f"{type(self).__name__} has no null condition; CFG needs one")

    def drop(self, cond: Any, generator: GeneratorLike = None) -> Any:
        """Training-time dropout: replace each sample's condition by the null one w.p. dropout."""
        p = float(self.config.dropout) if isinstance(self.config, ConditionerConfig) else 0.0
        if cond is None or p <= 0:
            return cond
        null = self.null(cond)
        keep = rand((cond.shape[0],), generator, cond.device) >= p
        return torch.where(keep.reshape(-1, *([1] * (cond.ndim - 1))), cond, null)


class PassThrough(Conditioner):
    """Passes the raw condition to the network unchanged."""
