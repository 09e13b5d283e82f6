"""Denoisers for SE(3) registration: ``network(H_t, t, cond) -> dH`` (B, 4, 4).

Both networks apply the current pose to the source cloud, X_t = H_t X, and predict the
correction dH that takes X_t onto the model cloud; the ``pose`` parameterization turns it
into H0_hat = dH H_t.

* ``kabsch`` (:class:`KabschOracle`): no parameters; source point i corresponds to model point
  i, and dH is the least-squares rigid alignment. Exact when the correspondences are (tests,
  conformance probes, an oracle for the sampler).
* ``registration`` (:class:`RegistrationNet`): a DCP-style network (Wang & Solomon 2019). Per
  point features: a shared MLP on centred coordinates, an EdgeConv over the ``k`` nearest
  neighbours (Wang et al. 2019, DGCNN) and rotation-invariant local descriptors (distance to the
  centroid, mean neighbour distance and the invariants tr C, tr C^2, det C of the neighbourhood
  covariance C, which let points be matched across a rotation), mixed with a max-pooled
  global feature;
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


def example_inputs(batch: int, points: int = 64) -> tuple:
    """``(H_t, t, cond)``: random poses and clouds related by them (export / conformance probes)."""
    g = torch.Generator().manual_seed(batch)
    h = lie.from_rt(lie.random_rotations(batch, g), 0.1 * torch.randn(batch, 3, generator=g, dtype=torch.float64))
    src = torch.randn(batch, points, 3, generator=g)
    return h.float(), torch.rand(batch, generator=g), {"source": src, "model": lie.transform(h.float(), src)}


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

    def example_inputs(self, batch: int):
        return example_inputs(batch)


class RegistrationConfig(ComponentConfig):
    width: int = Field(64, ge=8, description="feature width d")
    layers: int = Field(2, ge=0, le=8, description="self + cross attention rounds")
    heads: int = Field(4, ge=1, description="attention heads")
    tau: float = Field(1.0, gt=0, description="softmax temperature of the soft correspondences")
    k: int = Field(16, ge=2, le=64, description="nearest neighbours of the local features")
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

    def __init__(self, width: int = 64, layers: int = 2, heads: int = 4, tau: float = 1.0, k: int = 16,
                 time_conditioned: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.width, self.tau, self.k = width, tau, k
        self.time_conditioned = time_conditioned
        self.point = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, width))
        self.edge = nn.Sequential(nn.Linear(6, width), nn.GELU(), nn.Linear(width, width))
        self.invariant = nn.Sequential(nn.Linear(5, width), nn.GELU(), nn.Linear(width, width))
        self.mix = nn.Sequential(nn.Linear(4 * width, width), nn.GELU(), nn.Linear(width, width))
        self.time = nn.Sequential(nn.Linear(2, width), nn.GELU(), nn.Linear(width, width)) if time_conditioned else None
        self.blocks = nn.ModuleList([_Block(width, heads) for _ in range(layers)])
        self.inlier = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))

    def local(self, centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EdgeConv features and rotation-invariant descriptors of each point's k neighbours."""
        sq = (centred * centred).sum(-1)
        d2 = sq[:, :, None] + sq[:, None, :] - 2 * centred @ centred.transpose(-1, -2)
        k = min(self.k, centred.shape[1])
        idx = torch.topk(d2, k, dim=-1, largest=False).indices                      # (B, N, k)
        nbr = torch.gather(centred[:, None].expand(-1, centred.shape[1], -1, -1), 2,
                           idx[..., None].expand(-1, -1, -1, 3))                    # (B, N, k, 3)
        rel = nbr - centred[:, :, None]
        edge = self.edge(torch.cat([centred[:, :, None].expand_as(rel), rel], -1)).max(2).values
        dev = nbr - nbr.mean(2, keepdim=True)
        cov = dev.transpose(-1, -2) @ dev / k                                        # (B, N, 3, 3)
        tr = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        tr2 = (cov * cov).sum((-1, -2))
        det = (cov[..., 0, 0] * (cov[..., 1, 1] * cov[..., 2, 2] - cov[..., 1, 2] * cov[..., 2, 1])
               - cov[..., 0, 1] * (cov[..., 1, 0] * cov[..., 2, 2] - cov[..., 1, 2] * cov[..., 2, 0])
               + cov[..., 0, 2] * (cov[..., 1, 0] * cov[..., 2, 1] - cov[..., 1, 1] * cov[..., 2, 0]))
        inv = torch.stack([centred.norm(dim=-1), rel.norm(dim=-1).mean(-1), torch.sqrt(tr.clamp_min(0) + 1e-12),
                           (tr2.clamp_min(0) + 1e-12) ** 0.25, torch.sign(det) * (det.abs() + 1e-12) ** (1 / 3)], -1)
        return edge, self.invariant(inv * 4.0)

    def embed(self, pts: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        centred = pts - pts.mean(1, keepdim=True)
        f = self.point(centred)
        edge, inv = self.local(centred)
        f = torch.cat([f, edge, inv], -1)
        g = f.max(1, keepdim=True).values
        f = self.mix(torch.cat([f, g[..., :self.width].expand(-1, f.shape[1], -1)], -1))
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
        return example_inputs(batch)
