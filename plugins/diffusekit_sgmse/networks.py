"""NCSN++-style complex U-Net for spectrograms (Song et al. 2021 NCSN++, as adapted by SGMSE+).

The complex state x_t (B, F, T) and the condition y (B, F, T) (or a stack (B, K, F, T), e.g.
StoRM's [y, y_hat]) enter as real channels [Re x, Im x, Re y, Im y, ...]; the output has two
channels read as one complex spectrogram. Time enters through Gaussian Fourier features of
log t (NCSN++ "fourier" embedding) followed by a 2-layer MLP, added in every residual block.

Exporters see a purely real interface: ``forward`` also accepts the real layout directly,
``network(x_real (B, 2, F, T), t (B,), cond_real (B, 2K, F, T)) -> (B, 2, F, T)``, and
``example_inputs(batch)`` returns such real tensors; STFT / iSTFT stay outside the graph.

Sizes: ``ncsnpp-mini`` (default here, ~2M parameters, trainable on a CPU),
``ncsnpp6M`` (nf 96, ch_mult (1,1,1,1)), ``ncsnpp12M`` (nf 96, (1,2,2,1)), ``ncsnpp`` StoRM
size (nf 128, (1,2,2,2), 1 res block, ~28M) and ``ncsnpp-full`` (nf 128, (1,1,2,2,2,2,2),
2 res blocks, attention at 16, the SGMSE+ paper network).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from diffusekit.config import Component, ComponentConfig
from diffusekit.network import Network

PRESETS: dict[str, dict] = {
    "ncsnpp-mini": dict(nf=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_levels=()),
    "ncsnpp6M": dict(nf=96, ch_mult=(1, 1, 1, 1), num_res_blocks=2, attn_levels=()),
    "ncsnpp12M": dict(nf=96, ch_mult=(1, 2, 2, 1), num_res_blocks=2, attn_levels=()),
    "ncsnpp": dict(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_levels=()),
    "ncsnpp-full": dict(nf=128, ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, attn_levels=(4,)),
}


class GaussianFourier(nn.Module):
    """Fixed random Fourier features [sin 2 pi w s, cos 2 pi w s] of s = log t (scale 16)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("w", torch.randn(dim // 2, generator=torch.Generator().manual_seed(0)) * scale)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        p = 2 * math.pi * s[:, None] * self.w[None, :]
        return torch.cat([torch.sin(p), torch.cos(p)], dim=1)


def _norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= min(32, ch / 4) that divides ch."""
    cap = min(32, max(1, ch // 4))
    groups = max(d for d in range(1, cap + 1) if ch % d == 0)
    return nn.GroupNorm(groups, ch, eps=1e-6)


class ResBlock(nn.Module):
    """BigGAN-style residual block with additive time embedding (NCSN++ ResnetBlockBigGAN)."""

    def __init__(self, cin: int, cout: int, temb: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x, temb):
        h = self.c1(self.act(self.n1(x)))
        h = h + self.t(temb)[:, :, None, None]
        h = self.c2(self.act(self.n2(h)))
        return (self.skip(x) + h) / math.sqrt(2.0)


class Attention(nn.Module):
    """Single-head self-attention over all time-frequency positions of a level."""

    def __init__(self, ch: int):
        super().__init__()
        self.n = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.o = nn.Conv2d(ch, ch, 1)

    def forward(self, x, temb=None):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.n(x)).reshape(b, 3, c, h * w).unbind(1)
        a = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)
        out = (v @ a.transpose(1, 2)).reshape(b, c, h, w)
        return (x + self.o(out)) / math.sqrt(2.0)


class NCSNppConfig(ComponentConfig):
    preset: Literal["ncsnpp-mini", "ncsnpp6M", "ncsnpp12M", "ncsnpp", "ncsnpp-full", "custom"] = Field(
        "ncsnpp-mini", description="size preset; 'custom' uses nf / ch_mult / num_res_blocks / attn_levels")
    nf: int = Field(32, ge=4, le=512, description="base channel count (custom preset)")
    ch_mult: tuple[int, ...] = Field((1, 2, 2, 2), min_length=1, max_length=8)
    num_res_blocks: int = Field(1, ge=1, le=8)
    attn_levels: tuple[int, ...] = Field((), description="levels (0 = full resolution) with attention")
    cond_channels: int = Field(1, ge=0, le=4, description="complex condition spectrograms (StoRM: 2)")
    n_freq: int = Field(256, ge=8, description="frequency bins of the spectrogram (example inputs)")
    frames: int = Field(64, ge=8, description="frames of the example inputs")


class NCSNpp(Network, Component):
    """Complex spectrogram U-Net: network(x_t, t, cond) -> complex (B, F, T)."""

    Config = NCSNppConfig

    def __init__(self, **params):
        nn.Module.__init__(self)
        Component.__init__(self, **params)
        c = self.config
        arch = PRESETS.get(c.preset, dict(nf=c.nf, ch_mult=c.ch_mult, num_res_blocks=c.num_res_blocks,
                                          attn_levels=c.attn_levels))
        nf, mult = arch["nf"], tuple(arch["ch_mult"])
        self.levels = len(mult)
        self.sample_shape = None  # spectrogram length varies; the process checks the bins only
        temb = 4 * nf
        self.fourier = GaussianFourier(nf)
        self.temb = nn.Sequential(nn.Linear(nf, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(2 + 2 * c.cond_channels, nf, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        chans = [nf]
        ch = nf
        for lvl, m in enumerate(mult):
            blocks = nn.ModuleList()
            for _ in range(arch["num_res_blocks"]):
                blocks.append(ResBlock(ch, nf * m, temb))
                ch = nf * m
                if lvl in arch["attn_levels"]:
                    blocks.append(Attention(ch))
                chans.append(ch)
            self.down.append(blocks)
            if lvl < self.levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                chans.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, temb), Attention(ch), ResBlock(ch, ch, temb)]
                                 if arch["attn_levels"] else [ResBlock(ch, ch, temb), ResBlock(ch, ch, temb)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(self.levels)):
            blocks = nn.ModuleList()
            for _ in range(arch["num_res_blocks"] + 1):
                blocks.append(ResBlock(ch + chans.pop(), nf * mult[lvl], temb))
                ch = nf * mult[lvl]
                if lvl in arch["attn_levels"]:
                    blocks.append(Attention(ch))
            self.up.append(blocks)
            if lvl > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                   nn.Conv2d(ch, ch, 3, padding=1)))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, 2, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def divisor(self) -> int:
        """Frequency bins and frames must be multiples of this."""
        return 2 ** (self.levels - 1)

    def forward_real(self, inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, 2 + 2K, F, T) real, t (B,) -> (B, 2, F, T) real."""
        emb = self.temb(self.fourier(torch.log(t.to(inp.dtype))))
        h = self.inp(inp)
        hs = [h]
        for lvl, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, emb)
                if isinstance(blk, ResBlock):
                    hs.append(h)
            if lvl < self.levels - 1:
                h = self.downsample[lvl](h)
                hs.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for i, blocks in enumerate(self.up):
            for blk in blocks:
                if isinstance(blk, ResBlock):
                    h = blk(torch.cat([h, hs.pop()], dim=1), emb)
                else:
                    h = blk(h, emb)
            if i < self.levels - 1:
                h = self.upsample[i](h)
        return self.out(h)

    @staticmethod
    def to_channels(z: torch.Tensor) -> torch.Tensor:
        """complex (B, F, T) -> real (B, 2, F, T); complex (B, K, F, T) -> (B, 2K, F, T)."""
        if z.ndim == 3:
            z = z[:, None]
        r = torch.view_as_real(z)  # (B, K, F, T, 2)
        return r.permute(0, 1, 4, 2, 3).reshape(z.shape[0], -1, z.shape[2], z.shape[3])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None and self.config.cond_channels:
            raise ValueError("NCSNpp needs the noisy spectrogram as cond (cond_channels > 0)")
        if torch.is_complex(x_t):
            parts = [self.to_channels(x_t)] + ([self.to_channels(cond)] if cond is not None else [])
            # .to(): under CPU bf16 autocast the convolutions return bfloat16, which has no complex type
            out = self.forward_real(torch.cat(parts, dim=1), t).to(x_t.real.dtype)
            return torch.complex(out[:, 0], out[:, 1])
        parts = [x_t] + ([cond] if cond is not None else [])
        return self.forward_real(torch.cat(parts, dim=1), t)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Real-valued inputs for export: (x (B, 2, F, T), t (B,), cond (B, 2K, F, T))."""
        c = self.config
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 2, c.n_freq, c.frames, generator=g)
        t = torch.rand(batch, generator=g) * 0.9 + 0.05
        if not c.cond_channels:
            return (x, t)
        return (x, t, torch.randn(batch, 2 * c.cond_channels, c.n_freq, c.frames, generator=g))
