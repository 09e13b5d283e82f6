"""Conditioners: class labels and array / image conditions (see docs/plugins/guidance.md).

Design. A conditioner maps the *raw* condition a user passes to ``Pipeline.sample(cond=...)``
to what the network receives as ``cond``; the null condition and the training-time dropout
(Ho & Salimans 2022, "Classifier-free diffusion guidance", sec. 3.2: drop the condition with
probability p_uncond) are defined on the raw condition, so CFG can batch ``[cond, null]``
in raw space and encode both with one call.

* ``label``: raw labels are integers in [0, num_classes); the null label is ``num_classes``.
  With ``embed_dim = 0`` the network receives the label ids (the ``mlp`` network with
  ``num_classes = K`` embeds them itself, id K = null); with ``embed_dim > 0`` the conditioner
  owns an ``nn.Embedding(K + 1, embed_dim)`` and the network receives vectors (``mlp`` with
  ``cond_dim = embed_dim``).
* ``array``: raw arrays of any shape (B, ...). ``mode="concat"`` passes them through (the network
  concatenates them to its input: the ``mlp`` with ``cond_dim``, or an image network along
  channels); ``mode="film"`` flattens and projects them with a small MLP to a vector that a
  network applies with :class:`FiLM` (Perez et al. 2018: h <- h * (1 + gamma(c)) + beta(c)).
  The null array is filled with ``null_value``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from diffusekit.conditioner import Conditioner, ConditionerConfig
from diffusekit.errors import ConfigError, ShapeError
from diffusekit.random import GeneratorLike, rand


class LabelConfig(ConditionerConfig):
    num_classes: int = Field(..., ge=1, description="number of classes K; label K is the null label")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="training-time probability of the null label (CFG)")
    embed_dim: int = Field(0, ge=0, description="0: pass label ids to the network; > 0: learned embedding width")


class LabelConditioner(Conditioner):
    """Class labels with a null label (id ``num_classes``) and CFG dropout."""

    Config = LabelConfig

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        cfg = self.config
        self.num_classes = cfg.num_classes
        self.embedding = nn.Embedding(cfg.num_classes + 1, cfg.embed_dim) if cfg.embed_dim else None

    def validate(self, cond: Any) -> torch.Tensor:
        """Check raw labels once (outside the sampling loop; this syncs with the host)."""
        if not torch.is_tensor(cond):
            cond = torch.as_tensor(cond)
        if cond.ndim != 1 or cond.is_floating_point() or cond.is_complex():
            raise ShapeError(f"cond: label conditioner expects integer labels of shape (B,), got "
                             f"{tuple(cond.shape)} {cond.dtype}")
        if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) > self.num_classes):
            raise ConfigError(f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = null), got "
                              f"min {int(cond.min())}, max {int(cond.max())}; check num_classes", loc="cond")
        return cond.long()

    def forward(self, cond: Any) -> torch.Tensor:
        labels = torch.as_tensor(cond).long()
        if self.embedding is None:
            return labels
        return self.embedding(labels.to(self.embedding.weight.device))

    def null(self, cond: Any) -> torch.Tensor:
        return torch.full_like(torch.as_tensor(cond).long(), self.num_classes)

    def drop(self, cond: Any, generator: GeneratorLike = None) -> Any:
        if cond is None:
            return cond
        return super().drop(self.validate(cond), generator)


class ArrayConfig(ConditionerConfig):
    mode: Literal["concat", "film"] = Field("concat", description="concat: pass through; film: project to a vector")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="training-time probability of the null array (CFG)")
    null_value: float = Field(0.0, description="fill value of the null (unconditional) array")
    features: int = Field(0, ge=0, description="film: flattened size of one raw condition")
    embed_dim: int = Field(64, ge=1, description="film: width of the vector handed to the network")


class ArrayConditioner(Conditioner):
    """Array / image conditions by concatenation or FiLM embedding."""

    Config = ArrayConfig

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        cfg = self.config
        self.proj = None
        if cfg.mode == "film":
            if cfg.features < 1:
                raise ConfigError("mode='film' needs features = the flattened size of one condition "
                                  "(e.g. 64 for a 1x8x8 image)", loc="ArrayConditioner.features")
            self.proj = nn.Sequential(nn.Linear(cfg.features, cfg.embed_dim), nn.SiLU(),
                                      nn.Linear(cfg.embed_dim, cfg.embed_dim))

    def forward(self, cond: Any) -> torch.Tensor:
        if not torch.is_tensor(cond) or cond.ndim < 1:
            raise ShapeError(f"cond: array conditioner expects a tensor (B, ...), got {type(cond).__name__}")
        if self.proj is None:
            return cond
        flat = cond.flatten(1).to(self.proj[0].weight.dtype)
        if flat.shape[1] != self.config.features:
            raise ShapeError(f"cond: {flat.shape[1]} features per sample, but the conditioner was built with "
                             f"features={self.config.features}")
        return self.proj(flat)

    def null(self, cond: Any) -> torch.Tensor:
        return torch.full_like(cond, self.config.null_value)

    def drop(self, cond: Any, generator: GeneratorLike = None) -> Any:
        p = self.config.dropout
        if cond is None or p <= 0:
            return cond
        keep = rand((cond.shape[0],), generator, cond.device) >= p
        return torch.where(keep.reshape(-1, *([1] * (cond.ndim - 1))), cond, self.null(cond))


class FiLM(nn.Module):
    """Feature-wise linear modulation h * (1 + gamma(c)) + beta(c) (Perez et al. 2018).

    A helper for network authors consuming ``array`` (``mode="film"``) or embedded ``label``
    conditions; gamma and beta start at zero so the layer starts as the identity.
    """

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.to_scale_shift = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_scale_shift(c).chunk(2, dim=-1)
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.ndim - 2)
        return h * (1 + gamma.reshape(shape)) + beta.reshape(shape)
