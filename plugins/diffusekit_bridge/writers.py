"""``diffusekit sample RUN --out strip.gif``: videos (N, F, C, H, W) in [-1, 1] as an animated GIF
whose frame k shows frame k of (up to 8) videos side by side (a strip), enlarged 4x."""

from __future__ import annotations

from pathlib import Path

import torch

from diffusekit.writers import SampleWriter


def gif_frames(videos: torch.Tensor, max_videos: int = 8, scale: int = 4):
    """uint8 frames (F, H * scale, n * (W + 1) * scale) of the strip (white = background)."""
    import numpy as np

    v = videos[:max_videos].detach().float().cpu().clamp(-1, 1)
    if v.shape[2] == 3:
        v = v.mean(2, keepdim=True)
    v = (1 - (v[:, :, 0] + 1) / 2)  # ink dark on white, like the docs' pictures
    n, f, h, w = v.shape
    pad = torch.ones(n, f, h, 1)
    strip = torch.cat([v, pad], 3).permute(1, 2, 0, 3).reshape(f, h, n * (w + 1))
    strip = strip.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (strip.numpy() * 255).astype(np.uint8)


def write_gif_strip(path, videos: torch.Tensor, duration_ms: int = 300) -> str:
    """Write the animated strip of ``videos`` (N, F, C, H, W) to ``path``."""
    from PIL import Image

    frames = [Image.fromarray(a, mode="L") for a in gif_frames(videos)]
    frames[0].save(str(Path(path)), format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms,
                   loop=0)
    return f"an animated GIF strip of {min(len(videos), 8)} videos x {videos.shape[1]} frames"


class GifStripWriter(SampleWriter):
    """an animated GIF strip of videos (states of shape (N, F, 1 or 3, H, W) in [-1, 1])"""

    suffixes = (".gif",)

    def accepts(self, samples, context):
        return torch.is_tensor(samples) and samples.ndim == 5 and samples.shape[2] in (1, 3)

    def write(self, path, samples, context):
        return write_gif_strip(path, samples)


__all__ = ["GifStripWriter", "write_gif_strip", "gif_frames"]
