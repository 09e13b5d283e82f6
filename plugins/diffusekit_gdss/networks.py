"""GDSS score networks (Jo, Lee, Hwang 2022, section 3.2 and appendix C).

* :class:`ScoreNetworkX`: a stack of dense GCN layers (tanh) over the noisy node features and
  adjacency; the input and every layer's output are concatenated and a 3-layer MLP (ELU) maps
  them to the node-feature output, masked by the node flags.
* :class:`ScoreNetworkA`: the adjacency powers [A, A^2, ..., A^c_init] are the first
  channels; each graph multi-head attention layer (:class:`AttentionLayer`) computes per
  channel Q, K, V with dense GCNs, the symmetrised tanh(Q K^T / sqrt(d)) map is a new
  adjacency channel, and an MLP mixes the channels into the next layer's symmetric
  adjacency channels. All channels are concatenated and a 3-layer MLP gives the output,
  times (1 - I) (no self loops) and masked by the flags.
* :class:`GDSSNetwork`: one module over the joint state ``{"x", "adj"}`` returning
  ``{"x": ..., "adj": ...}``; the node flags come in as ``cond``.

As in the paper the networks do not read t (``time_conditioned=False``: the noise level is
inferred from the input); ``time_conditioned=True`` appends t and ``size_conditioned=True`` the
graph size n / max_nodes (n from the flags) as an extra node-feature and
adjacency channel. With the ``eps`` parameterization the outputs are eps predictions, i.e.
score = -output / sigma(t) (the paper's VP form).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from diffusekit.config import ComponentConfig
from diffusekit.network import Network

from .processes import adj_mask, node_mask


def gcn_norm(adj: torch.Tensor) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 with A's diagonal replaced by ones (degrees clamped at 1)."""
    n = adj.shape[-1]
    eye = torch.eye(n, dtype=adj.dtype, device=adj.device)
    a = adj * (1 - eye) + eye
    d = a.sum(-1).clamp_min(1.0).pow(-0.5)
    return d.unsqueeze(-1) * a * d.unsqueeze(-2)


class DenseGCNConv(nn.Module):
    """Dense graph convolution (Kipf & Welling 2017): D^-1/2 (A + I) D^-1/2 X W + b. It takes the
    normalised adjacency ``gcn_norm(adj)``, so several convolutions over the same A (Q, K, V;
    the layers of ScoreNetworkX) share one normalisation."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, norm_adj: torch.Tensor) -> torch.Tensor:
        return norm_adj @ (x @ self.weight) + self.bias


class MLP(nn.Module):
    """``layers`` linear maps with an activation (ELU) between them (none after the last)."""

    def __init__(self, layers: int, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, lin in enumerate(self.linears):
            x = lin(x)
            if k < len(self.linears) - 1:
                x = F.elu(x)
        return x


def adjacency_powers(adj: torch.Tensor, c: int) -> torch.Tensor:
    """[A, A^2, ..., A^c] as channels: (B, c, N, N)."""
    out, power = [], adj
    for k in range(c):
        if k:
            power = power @ adj
        out.append(power)
    return torch.stack(out, 1)


class GraphAttention(nn.Module):
    """One graph multi-head attention map: Q, K, V by dense GCNs; A' = mean over heads of
    tanh(Q_h K_h^T / sqrt(out_dim)), symmetrised."""

    def __init__(self, in_dim: int, attn_dim: int, out_dim: int, heads: int) -> None:
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attention dim {attn_dim} must be divisible by heads {heads}")
        self.q, self.k = DenseGCNConv(in_dim, attn_dim), DenseGCNConv(in_dim, attn_dim)
        self.v = DenseGCNConv(in_dim, out_dim)
        self.heads, self.out_dim = heads, out_dim

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        a = gcn_norm(adj)
        q = self.q(x, a).reshape(b, n, self.heads, -1).transpose(1, 2)
        k = self.k(x, a).reshape(b, n, self.heads, -1).transpose(1, 2)
        att = torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(self.out_dim)).mean(1)
        return self.v(x, a), (att + att.transpose(-1, -2)) / 2


class AttentionLayer(nn.Module):
    """GDSS's attention layer: one attention map per input adjacency channel; node outputs
    mixed by an MLP (tanh), adjacency channels [attention maps, input channels] mixed by an
    MLP into ``c_out`` symmetric channels, both masked by the flags."""

    def __init__(self, linears: int, in_dim: int, attn_dim: int, out_dim: int, c_in: int, c_out: int,
                 heads: int) -> None:
        super().__init__()
        self.attn = nn.ModuleList(GraphAttention(in_dim, attn_dim, out_dim, heads) for _ in range(c_in))
        hidden = 2 * max(c_in, c_out)
        self.mlp = MLP(linears, 2 * c_in, hidden, c_out)
        self.multi_channel = MLP(2, c_in * out_dim, hidden, out_dim)

    def forward(self, x, adj, flags):
        xs, maps = [], []
        for ch, att in enumerate(self.attn):
            v, m = att(x, adj[:, ch])
            xs.append(v)
            maps.append(m)
        x_out = torch.tanh(node_mask(flags, self.multi_channel(torch.cat(xs, -1))))
        mlp_in = torch.cat([torch.stack(maps, -1), adj.permute(0, 2, 3, 1)], -1)
        a = self.mlp(mlp_in).permute(0, 3, 1, 2)
        a = a + a.transpose(-1, -2)
        f = None if flags is None else flags.unsqueeze(1)
        return x_out, (a if f is None else a * f.unsqueeze(-1) * f.unsqueeze(-2))


class ScoreNetworkX(nn.Module):
    """Dense GCN stack (tanh) -> concatenation -> 3-layer MLP, masked by the flags."""

    def __init__(self, num_features: int, depth: int = 2, hidden: int = 16, extra_in: int = 0) -> None:
        super().__init__()
        dims = [num_features + extra_in] + [hidden] * depth
        self.layers = nn.ModuleList(DenseGCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        fdim = sum(dims)
        self.final = MLP(3, fdim, 2 * fdim, num_features)

    def forward(self, x, adj, flags, g_feat: Optional[torch.Tensor] = None):
        if g_feat is not None:
            x = torch.cat([x, g_feat.expand(*x.shape[:2], -1)], -1)
        feats, a = [x], gcn_norm(adj)
        for layer in self.layers:
            x = torch.tanh(layer(x, a))
            feats.append(x)
        return node_mask(flags, self.final(torch.cat(feats, -1)))


class ScoreNetworkA(nn.Module):
    """Adjacency powers -> graph multi-head attention layers -> 3-layer MLP over all channels,
    times (1 - I), masked by the flags."""

    def __init__(self, num_features: int, layers: int = 3, linears: int = 2, hidden: int = 16, adim: int = 16,
                 heads: int = 4, c_init: int = 2, c_hid: int = 8, c_final: int = 4, extra_in: int = 0) -> None:
        super().__init__()
        self.c_init, self.extra_in = c_init, extra_in
        blocks = []
        for k in range(layers):
            in_dim = num_features + extra_in if k == 0 else hidden
            c_in = c_init if k == 0 else c_hid
            c_out = c_final if k == layers - 1 else c_hid
            blocks.append(AttentionLayer(linears, in_dim, adim, hidden, c_in, c_out, heads))
        self.layers = nn.ModuleList(blocks)
        fdim = c_hid * (layers - 1) + c_final + c_init + extra_in
        self.final = MLP(3, fdim, 2 * fdim, 1)

    def forward(self, x, adj, flags, g_feat: Optional[torch.Tensor] = None):
        if g_feat is not None:
            x = torch.cat([x, g_feat.expand(*x.shape[:2], -1)], -1)
        a = adjacency_powers(adj, self.c_init)
        channels = [a]
        for layer in self.layers:
            x, a = layer(x, a, flags)
            channels.append(a)
        h = torch.cat(channels, 1).permute(0, 2, 3, 1)
        if g_feat is not None:
            h = torch.cat([h, g_feat.unsqueeze(1).expand(*h.shape[:3], -1)], -1)
        out = self.final(h).squeeze(-1)
        n = out.shape[-1]
        out = out * (1 - torch.eye(n, dtype=out.dtype, device=out.device))
        return adj_mask(flags, out)


class GDSSNetworkConfig(ComponentConfig):
    max_nodes: int = Field(20, ge=1, description="N (for example inputs and the declared sample shape)")
    num_features: int = Field(10, ge=1, description="F, node feature channels")
    depth: int = Field(2, ge=1, description="ScoreNetworkX: GCN layers")
    nhid: int = Field(16, ge=1, description="hidden width of both networks")
    adim: int = Field(16, ge=1, description="ScoreNetworkA: attention dimension")
    heads: int = Field(4, ge=1, description="ScoreNetworkA: attention heads")
    layers: int = Field(3, ge=1, description="ScoreNetworkA: attention layers")
    linears: int = Field(2, ge=1, description="ScoreNetworkA: linear layers of the channel MLP")
    c_init: int = Field(2, ge=1, description="ScoreNetworkA: adjacency powers A..A^c_init")
    c_hid: int = Field(8, ge=1, description="ScoreNetworkA: hidden adjacency channels")
    c_final: int = Field(4, ge=1, description="ScoreNetworkA: channels of the last attention layer")
    time_conditioned: bool = Field(False, description="append t as an input channel (the paper: False)")
    size_conditioned: bool = Field(
        False, description="append the graph size n / max_nodes (from the flags) as an input channel (the paper: False)")


class GDSSNetwork(Network):
    """ScoreNetworkX + ScoreNetworkA over the joint state; ``cond`` is the node flags (B, N)."""

    Config = GDSSNetworkConfig

    def __init__(self, **params) -> None:
        super().__init__()
        from diffusekit.config import validate_params

        self.config = cfg = validate_params(GDSSNetworkConfig, params, loc="network")
        extra = int(cfg.time_conditioned) + int(cfg.size_conditioned)
        self.time_conditioned = cfg.time_conditioned
        self.sample_shape = {"adj": (cfg.max_nodes, cfg.max_nodes), "x": (cfg.max_nodes, cfg.num_features)}
        self.score_x = ScoreNetworkX(cfg.num_features, cfg.depth, cfg.nhid, extra)
        self.score_adj = ScoreNetworkA(cfg.num_features, cfg.layers, cfg.linears, cfg.nhid, cfg.adim, cfg.heads,
                                       cfg.c_init, cfg.c_hid, cfg.c_final, extra)

    def forward(self, x_t, t, cond=None):
        x, adj = x_t["x"], x_t["adj"]
        flags = cond
        feats = []  # per-graph input channels, (B, 1, k)
        if self.time_conditioned:
            feats.append(t.to(x.dtype).reshape(-1, 1, 1).expand(x.shape[0], 1, 1))
        if self.config.size_conditioned:
            n = self.config.max_nodes  # no flags: every node is real
            size = flags.to(x.dtype).sum(-1) if flags is not None else x.new_full(x.shape[:1], n)
            feats.append((size / n).reshape(-1, 1, 1))
        g_feat = torch.cat(feats, -1) if feats else None
        return {"x": self.score_x(x, adj, flags, g_feat), "adj": self.score_adj(x, adj, flags, g_feat)}

    def example_inputs(self, batch: int):
        cfg = self.config
        g = torch.Generator().manual_seed(0)
        n = cfg.max_nodes
        sizes = torch.arange(batch) % n + 1 if batch > 1 else torch.tensor([n])
        flags = (torch.arange(n).unsqueeze(0) < torch.maximum(sizes, torch.full_like(sizes, n // 2 + 1)).unsqueeze(1)).float()
        up = torch.randn(batch, n, n, generator=g).triu(1)
        adj = adj_mask(flags, up + up.transpose(1, 2))
        x = node_mask(flags, torch.randn(batch, n, cfg.num_features, generator=g))
        return {"adj": adj, "x": x}, torch.full((batch,), 0.5), flags


__all__ = ["GDSSNetwork", "GDSSNetworkConfig", "ScoreNetworkX", "ScoreNetworkA", "AttentionLayer",
           "GraphAttention", "DenseGCNConv", "MLP", "adjacency_powers"]
