"""Denoisers for SE(3) registration: ``network(H_t, t, cond) -> dH`` (B, 4, 4).

Both networks apply the current pose to the source cloud, X_t = H_t X, and predict the
correction dH that takes X_t onto the model cloud; the ``pose`` parameterization turns it
into H0_hat = dH H_t.

* ``kabsch`` (:class:`KabschOracle`): no parameters; source point i corresponds to model point
  i, and dH is the least-squares rigid alignment. Exact when the correspondences are (tests,
  conformance probes, an oracle for the sampler).
* ``registration`` (:class:`RegistrationNet`): a DCP-style network (Wang & Solomon 2019). Per
  point features (a shared MLP on centred coordinates with a max-pooled global feature),
  ``layers`` rounds of self- and cross-attention between the two clouds, soft correspondences
  y_i = sum_j softmax_j(<f_i, g_j> / (tau sqrt(d))) m_j, a per-point inlier weight
  w_i = sigmoid(MLP(f_i)) (partial overlap, outliers), and the weighted Kabsch / Horn pose head
  of :mod:`.kabsch`. Like the paper's surrogate, it is not time-conditioned by default
  (``time_conditioned=True`` adds a time embedding to the point features).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from diffusekit.config import ComponentConfig
from diffusekit.errors import ShapeError
from diffusekit.network import Network

from . import lie
from .kabsch import kabsch


def _clouds(cond: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(cond, dict) or "source" not in cond or "model" not in cond:
        raise ShapeError("cond: SE(3) registration needs cond={'source': (B, N, 3), 'model': (B, M, 3)} "
                         f"point clouds, got {type(cond).__name__}")
    return cond["source"], cond["model"]


class KabschOracle(Network):
    """dH = least-squares alignment of H_t X_i onto M_i (known correspondences)."""

    sample_shape = (4, 4)
    time_conditioned = False

    def forward(self, h_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        source, model = _clouds(cond)
        x_t = lie.transform(h_t.to(source.dtype), source)
        return kabsch(x_t, model).to(h_t.dtype)


class RegistrationConfig(ComponentConfig):
    width: int = Field(64, ge=8, description="feature width d")
    layers: int = Field(2, ge=0, le=8, description="self + cross attention rounds")
    heads: int = Field(4, ge=1, description="attention heads")
    tau: float = Field(1.0, gt=0, description="softmax temperature of the soft correspondences")
    time_conditioned: bool = Field(False, description="add a time embedding (the paper's network is not)")


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        h = self.n1(f)
        f = f + self.self_attn(h, h, h, need_weights=False)[0]
        f = f + self.cross_attn(self.n2(f), g, g, need_weights=False)[0]
        return f + self.mlp(self.n3(f))


class RegistrationNet(Network):
    """DCP-style soft-correspondence network with a differentiable weighted Kabsch head."""

    Config = RegistrationConfig
    sample_shape = (4, 4)

    def __init__(self, width: int = 64, layers: int = 2, heads: int = 4, tau: float = 1.0,
                 time_conditioned: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.width, self.tau = width, tau
        self.time_conditioned = time_conditioned
        self.point = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, width))
        self.mix = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width))
        self.time = nn.Sequential(nn.Linear(2, width), nn.GELU(), nn.Linear(width, width)) if time_conditioned else None
        self.blocks = nn.ModuleList([_Block(width, heads) for _ in range(layers)])
        self.inlier = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))

    def embed(self, pts: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        centred = pts - pts.mean(1, keepdim=True)
        f = self.point(centred)
        f = self.mix(torch.cat([f, f.max(1, keepdim=True).values.expand_as(f)], -1))
        if self.time is not None:
            emb = torch.stack([torch.sin(math.pi * t), torch.cos(math.pi * t)], -1).to(f.dtype)
            f = f + self.time(emb)[:, None]
        return f

    def forward(self, h_t: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        source, model = _clouds(cond)
        x_t = lie.transform(h_t.to(source.dtype), source)
        f, g = self.embed(x_t, t), self.embed(model, t)
        for block in self.blocks:
            f, g = block(f, g), block(g, f)
        logits = f @ g.transpose(-1, -2) / (self.tau * math.sqrt(self.width))
        y = torch.softmax(logits, -1) @ model                  # soft correspondences
        w = torch.sigmoid(self.inlier(f))[..., 0]
        return kabsch(x_t, y, w).to(h_t.dtype)

    def example_inputs(self, batch: int):
        g = torch.Generator().manual_seed(batch)
        h = lie.from_rt(lie.random_rotations(batch, g), 0.1 * torch.randn(batch, 3, generator=g, dtype=torch.float64))
        src = torch.randn(batch, 64, 3, generator=g)
        return h.float(), torch.rand(batch, generator=g), {"source": src, "model": lie.transform(h.float(), src)}
