"""A compact DDPM++ / NCSN++-style U-Net for small images (8x8 digits up to 32x32).

Architecture (Ho et al. 2020; Song et al. 2021, "DDPM++" without FIR resampling):
sinusoidal time embedding -> 2-layer MLP; per resolution ``num_res_blocks`` residual blocks
(GroupNorm, SiLU, 3x3 conv, additive time embedding, dropout, zero-initialised second conv),
strided-conv down-sampling, nearest up-sampling + conv, skip connections by concatenation,
self-attention at the listed resolutions and in the middle, residual sums scaled by
1/sqrt(2) (NCSN++ ``skip_rescale``). ``forward`` has no data-dependent Python control flow,
so the module exports to ONNX with a dynamic batch dimension.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from pydantic import Field, model_validator
from torch import nn

from diffusekit.config import ComponentConfig
from diffusekit.network import Network

from .networks import FourierTime


def _groups(ch: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(self.act(self.norm2(h))))
        return (self.skip(x) + h) * (1 / math.sqrt(2))


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.scale = ch ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        att = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * self.scale, dim=-1)
        out = torch.einsum("bij,bcj->bci", att, v).reshape(b, c, h, w)
        return (x + self.proj(out)) * (1 / math.sqrt(2))


class UNetConfig(ComponentConfig):
    channels: int = Field(1, ge=1, description="image channels")
    image_size: int = Field(8, ge=4, description="height = width of the images")
    base: int = Field(32, ge=4, description="channels at the first resolution (nf)")
    ch_mult: tuple[int, ...] = Field((1, 2, 2), min_length=1, description="channel multiplier per resolution")
    num_res_blocks: int = Field(2, ge=1, le=8)
    attn_resolutions: tuple[int, ...] = Field((4,), description="resolutions with self-attention")
    dropout: float = Field(0.1, ge=0, lt=1)
    time_dim: int = Field(0, ge=0, description="time-embedding width (0: 4 * base)")
    time_scale: float = Field(1000.0, gt=0, description="t is multiplied by this before embedding")
    log_time: bool = Field(False, description="embed log(t)/4 (for sigma-valued time)")
    num_classes: int = Field(0, ge=0, description="class-conditional if > 0 (label num_classes = null)")

    @model_validator(mode="after")
    def _fits(self):
        down = 2 ** (len(self.ch_mult) - 1)
        if self.image_size % down:
            raise ValueError(f"image_size {self.image_size} is not divisible by 2^(len(ch_mult)-1) = {down}; "
                             "use fewer resolutions (ch_mult) or pad the images")
        return self


class UNet(Network):
    """DDPM++-style U-Net ``f(x, t, cond)`` for images of shape (B, channels, S, S)."""

    Config = UNetConfig

    def __init__(self, channels: int = 1, image_size: int = 8, base: int = 32, ch_mult=(1, 2, 2),
                 num_res_blocks: int = 2, attn_resolutions=(4,), dropout: float = 0.1, time_dim: int = 0,
                 time_scale: float = 1000.0, log_time: bool = False, num_classes: int = 0):
        super().__init__()
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.sample_shape = (channels, image_size, image_size)
        temb = time_dim or 4 * base
        self.time = nn.Sequential(FourierTime(base, time_scale, log_time), nn.Linear(base, temb), nn.SiLU(),
                                  nn.Linear(temb, temb))
        self.label = nn.Embedding(num_classes + 1, temb) if num_classes else None
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base]
        ch, res = base, image_size
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                block = nn.ModuleList([ResBlock(ch, base * mult, temb, dropout)])
                ch = base * mult
                if res in attn_resolutions:
                    block.append(Attention(ch))
                self.down.append(block)
                skips.append(ch)
            if level < len(ch_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        self.mid1, self.mid_attn, self.mid2 = ResBlock(ch, ch, temb, dropout), Attention(ch), ResBlock(ch, ch, temb, dropout)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(ch + skips.pop(), base * mult, temb, dropout)])
                ch = base * mult
                if res in attn_resolutions:
                    block.append(Attention(ch))
                self.up.append(block)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(ch, ch, 3, padding=1)]))
                res *= 2
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.act = nn.SiLU()

    @staticmethod
    def _is_resample(block: nn.ModuleList) -> bool:
        return not isinstance(block[0], ResBlock)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        emb = self.time(t)
        if self.label is not None:
            labels = cond if cond is not None else torch.full((x.shape[0],), self.num_classes, device=x.device)
            emb = emb + self.label(labels.long())
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:  # the structure is fixed at construction: static control flow
            if self._is_resample(block):
                h = block[0](h)
            else:
                h = block[0](h, emb)
                for extra in block[1:]:
                    h = extra(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block in self.up:
            if self._is_resample(block):
                h = block[1](block[0](h))
            else:
                h = block[0](torch.cat([h, hs.pop()], dim=1), emb)
                for extra in block[1:]:
                    h = extra(h)
        return self.conv_out(self.act(self.norm_out(h)))

    def example_inputs(self, batch: int = 4):
        """Inputs for export checks: (x, t, cond)."""
        x = torch.randn(batch, *self.sample_shape)
        t = torch.rand(batch) * 0.9 + 0.05
        cond = torch.randint(0, self.num_classes, (batch,)) if self.num_classes else None
        return x, t, cond
