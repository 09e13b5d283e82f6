"""Reference network: a small bidirectional (non-causal) transformer over token ids.

``network(x_t, t, cond=None) -> logits (B, L, vocab_size + 1)``. Pre-LayerNorm blocks with
``F.scaled_dot_product_attention`` and no data-dependent Python control flow, so it exports
to ONNX with a dynamic batch. Time conditioning is optional (MDLM finds it unnecessary; a
network without it lets the ancestral sampler cache predictions): when on, a sinusoidal
embedding of t is added to every token embedding.
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


class TransformerConfig(ComponentConfig):
    vocab_size: int = Field(..., ge=1, description="data tokens; ids in [0, vocab_size], vocab_size = mask")
    seq_len: int = Field(..., ge=1, le=65_536, description="sequence length L (learned positions)")
    dim: int = Field(128, ge=8, description="model width (divisible by heads)")
    depth: int = Field(4, ge=1, le=64, description="number of transformer blocks")
    heads: int = Field(4, ge=1, description="attention heads")
    mlp_ratio: float = Field(4.0, gt=0, description="hidden width of the MLP / dim")
    dropout: float = Field(0.0, ge=0, lt=1)
    time_conditioning: bool = Field(False, description="add an embedding of t to the tokens")


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, length, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)                 # bidirectional: no mask
        h = h + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, d)))
        return h + self.drop(self.mlp(self.norm2(h)))


class Transformer(Network):
    """Bidirectional transformer denoiser for masked diffusion over sequences of ``seq_len``."""

    Config = TransformerConfig

    def __init__(self, vocab_size: int, seq_len: int, dim: int = 128, depth: int = 4, heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, time_conditioning: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.sample_shape = (seq_len,)
        self.time_conditioned = time_conditioning
        self.tok = nn.Embedding(vocab_size + 1, dim)
        self.pos = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        if time_conditioning:
            half = dim // 2
            freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
            self.register_buffer("freqs", freqs, persistent=False)
            self.time = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size + 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.tok(x_t) + self.pos[:, : x_t.shape[1]]
        if self.time_conditioned:
            arg = (t.float() * 1000.0)[:, None] * self.freqs[None]
            h = h + self.time(torch.cat([torch.sin(arg), torch.cos(arg)], -1))[:, None]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def example_inputs(self, batch: int = 4):
        """(x_t LongTensor with about half the tokens masked, t, None) for export checks."""
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, self.vocab_size, (batch, self.seq_len), generator=g)
        masked = torch.rand(batch, self.seq_len, generator=g) < 0.5
        x = torch.where(masked, torch.full_like(x, self.vocab_size), x)
        t = torch.rand(batch, generator=g) * 0.9 + 0.05
        return x, t, None
