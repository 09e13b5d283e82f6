"""A video network small enough for a CPU: a 2-D U-Net over frames stacked as channels.

``VideoUNet(x_t, t, cond)``: x_t is a video (B, F, C, H, W); the network sees its F * C channels
concatenated with the conditioning image (the first frame, C channels) and, with ``use_x1``, the
bridge endpoint x1 (F * C channels, e.g. a neural prior's video), and returns (B, F, C, H, W).
Motion across frames is mixed by the convolutions over the stacked channels (frames-as-channels,
as early video-prediction networks do). Blocks are the score-SDE plugin's DDPM++ residual blocks.

``cond`` is the first frame (B, C, H, W) or ``{"image": first frame, "x1": video}``.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

from diffusekit.config import ComponentConfig
from diffusekit.errors import ConfigError
from diffusekit.network import Network
from diffusekit_sde.networks import FourierTime
from diffusekit_sde.unet import ResBlock, _groups


class VideoUNetConfig(ComponentConfig):
    frames: int = Field(5, ge=1, description="frames F of a video")
    channels: int = Field(1, ge=1, description="channels C of a frame")
    size: int = Field(16, ge=4, description="frame height = width")
    base: int = Field(32, ge=4, description="channels at the first resolution")
    ch_mult: tuple[int, ...] = Field((1, 2), min_length=1, description="channel multiplier per resolution")
    num_res_blocks: int = Field(1, ge=1, le=4)
    use_x1: bool = Field(False, description="also feed the bridge endpoint cond['x1'] (a neural prior's video)")
    time_scale: float = Field(1000.0, gt=0, description="t is multiplied by this before embedding")

    @model_validator(mode="after")
    def _fits(self):
        down = 2 ** (len(self.ch_mult) - 1)
        if self.size % down:
            raise ValueError(f"size {self.size} is not divisible by 2^(len(ch_mult)-1) = {down}")
        return self


def split_cond(cond: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(image, x1 or None) from a first frame or an {'image', 'x1'} dict."""
    if torch.is_tensor(cond):
        return cond, None
    if isinstance(cond, dict) and "image" in cond:
        return cond["image"], cond.get("x1")
    raise ConfigError("the video network needs cond = the first frame (B, C, H, W) or {'image': ..., 'x1': ...}, "
                      f"got {type(cond).__name__}", loc="cond")


class VideoUNet(Network):
    """Frames-as-channels U-Net for image-to-video (see the module docstring)."""

    Config = VideoUNetConfig

    def __init__(self, frames: int = 5, channels: int = 1, size: int = 16, base: int = 32, ch_mult=(1, 2),
                 num_res_blocks: int = 1, use_x1: bool = False, time_scale: float = 1000.0):
        super().__init__()
        self.frames, self.channels, self.size, self.use_x1 = frames, channels, size, use_x1
        self.sample_shape = (frames, channels, size, size)
        fc = frames * channels
        temb = 4 * base
        self.time = nn.Sequential(FourierTime(base, time_scale), nn.Linear(base, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(fc + channels + (fc if use_x1 else 0), base, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [base], base
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(ch, base * mult, temb, 0.0))
                ch = base * mult
                skips.append(ch)
            if level < len(ch_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1, self.mid2 = ResBlock(ch, ch, temb, 0.0), ResBlock(ch, ch, temb, 0.0)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(ch + skips.pop(), base * mult, temb, 0.0))
                ch = base * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, fc, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        image, x1 = split_cond(cond)
        b = x.shape[0]
        parts = [x.reshape(b, -1, self.size, self.size), image.to(x.dtype)]
        if self.use_x1:
            if x1 is None:
                raise ConfigError("this network was built with use_x1=True: cond must be {'image': ..., 'x1': ...}",
                                  loc="cond")
            parts.append(x1.reshape(b, -1, self.size, self.size).to(x.dtype))
        emb = self.time(t)
        h = self.conv_in(torch.cat(parts, 1))
        hs = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            hs.append(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], 1), emb) if isinstance(block, ResBlock) else block(h)
        return self.conv_out(self.act(self.norm_out(h))).reshape(x.shape)

    def example_inputs(self, batch: int = 4):
        x = torch.randn(batch, *self.sample_shape)
        image = torch.randn(batch, self.channels, self.size, self.size)
        cond = {"image": image, "x1": torch.randn_like(x)} if self.use_x1 else image
        return x, torch.rand(batch) * 0.9 + 0.05, cond


__all__ = ["VideoUNet", "VideoUNetConfig", "split_cond"]
