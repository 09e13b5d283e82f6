"""Reference network for low-dimensional data: a time-embedded residual MLP."""

from __future__ import annotations

import math
from typing import Optional

import torch
from pydantic import Field
from torch import nn

from diffusekit.config import ComponentConfig
from diffusekit.network import Network


class FourierTime(nn.Module):
    """Sinusoidal embedding of t (Vaswani et al. 2017), t scaled by ``scale`` first.

    With ``log_input`` the embedding is of log(t) / 4 (EDM's c_noise), for sigma-valued time.
    """

    def __init__(self, dim: int, scale: float = 1000.0, log_input: bool = False):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale
        self.log_input = log_input

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.freqs.dtype)
        if self.log_input:
            t = torch.log(t.clamp_min(1e-20)) / 4
        arg = (t * self.scale)[:, None] * self.freqs[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class MLPConfig(ComponentConfig):
    dim: int = Field(2, ge=1, description="data dimension")
    hidden: int = Field(256, ge=8, description="hidden width")
    depth: int = Field(3, ge=1, le=32, description="number of hidden layers")
    time_dim: int = Field(64, ge=4, description="time-embedding width")
    time_scale: float = Field(1000.0, gt=0, description="t is multiplied by this before embedding")
    log_time: bool = Field(False, description="embed log(t)/4 (for sigma-valued time, e.g. VE / EDM)")
    num_classes: int = Field(0, ge=0, description="class-conditional if > 0 (label num_classes = null)")
    cond_dim: int = Field(0, ge=0, description="width of a vector condition concatenated to the input")
    input_features: int = Field(0, ge=0, description="sinusoidal features per input coordinate (0: raw input only)")
    input_scale: float = Field(25.0, gt=0, description="coordinates are multiplied by this before the features")


class _Block(nn.Module):
    """Pre-activation residual block with the time embedding added inside: h + W2 s(W1 s(h) + E e)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.lin1, self.emb, self.lin2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.lin2(self.act(self.lin1(self.act(h)) + self.emb(emb)))


class MLP(Network):
    """Residual MLP f(x, t, cond) for vectors of shape (B, dim); the time (and label)
    embedding conditions every block, not only the input layer."""

    Config = MLPConfig

    def __init__(self, dim: int = 2, hidden: int = 256, depth: int = 3, time_dim: int = 64,
                 time_scale: float = 1000.0, log_time: bool = False, num_classes: int = 0,
                 cond_dim: int = 0, input_features: int = 0, input_scale: float = 25.0):
        super().__init__()
        self.dim, self.num_classes, self.cond_dim = dim, num_classes, cond_dim
        self.sample_shape = (dim,)
        self.time = nn.Sequential(FourierTime(time_dim, time_scale, log_time), nn.Linear(time_dim, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden))
        # Sinusoidal features of each coordinate (as for t) overcome the MLP's spectral bias on
        # low-dimensional data with sharp modes (tiny-diffusion style input embedding).
        self.features = FourierTime(input_features, input_scale) if input_features else None
        n_feat = dim * 2 * (input_features // 2) if input_features else 0
        self.inp = nn.Linear(dim + cond_dim + n_feat, hidden)
        self.label = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.blocks = nn.ModuleList(_Block(hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        inp = x
        if self.cond_dim:
            if cond is None:
                cond = torch.zeros(x.shape[0], self.cond_dim, device=x.device, dtype=x.dtype)
            inp = torch.cat([x, cond.to(x.dtype)], dim=-1)
        if self.features is not None:
            feats = self.features(x.reshape(-1)).reshape(x.shape[0], -1).to(x.dtype)
            inp = torch.cat([inp, feats], dim=-1)
        emb = self.time(t)
        if self.label is not None:
            labels = cond if cond is not None else torch.full((x.shape[0],), self.num_classes, device=x.device)
            emb = emb + self.label(labels.long())
        h = self.inp(inp) + emb
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)

    def example_inputs(self, batch: int = 4):
        """Inputs for export checks: (x, t, cond)."""
        x = torch.randn(batch, self.dim)
        t = torch.rand(batch) * 0.9 + 0.05
        cond = None
        if self.num_classes:
            cond = torch.randint(0, self.num_classes, (batch,))
        elif self.cond_dim:
            cond = torch.randn(batch, self.cond_dim)
        return x, t, cond
