"""Moving digits: an image-to-video task made here (no download).

Each video is one 8x8 digit of scikit-learn's digits (the ``digits`` dataset of the score-SDE
plugin, same train / test split) moving on a ``size`` x ``size`` canvas (background -1, values in
[-1, 1]) for ``frames`` frames. The motion is determined by the first frame: the digit starts
where the first frame shows it and moves with a velocity fixed by its class,

    class:     0      1      2       3       4      5        6       7       8      9
    (dr, dc): (1,0)  (0,1)  (-1,0)  (0,-1)  (1,1)  (-1,-1)  (1,-1)  (-1,1)  (2,0)  (0,2)

pixels per frame, reflecting off the canvas border (the digit always stays whole). The state is
(N, frames, 1, size, size); the condition is the first frame (N, 1, size, size).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.state import Example

VELOCITIES = torch.tensor([[1, 0], [0, 1], [-1, 0], [0, -1], [1, 1], [-1, -1], [1, -1], [-1, 1], [2, 0], [0, 2]])
_SPLIT_SEED = {"train": 0, "test": 1_000_003}


class MovingDigitsConfig(ComponentConfig):
    n: int = Field(6000, ge=1, description="number of videos")
    frames: int = Field(5, ge=2, le=64, description="frames per video (the first is the condition)")
    size: int = Field(16, ge=8, le=128, description="canvas height = width (digits are 8x8)")
    split: Literal["train", "test"] = "train"
    seed: int = 0
    labels: bool = Field(False, description="also return the digit classes: Example(x, cond=(first frame, labels))")

    @model_validator(mode="after")
    def _fits(self):
        if self.size < 8:
            raise ValueError(f"size {self.size} is smaller than a digit (8)")
        return self


def trajectories(start: torch.Tensor, velocity: torch.Tensor, frames: int, room: int) -> torch.Tensor:
    """Positions (N, frames, 2) of a point starting at ``start`` (N, 2) with ``velocity`` (N, 2),
    reflected into [0, room]."""
    steps = torch.arange(frames).view(1, frames, 1)
    raw = start.view(-1, 1, 2) + steps * velocity.view(-1, 1, 2)
    if room == 0:
        return torch.zeros_like(raw)
    period = 2 * room
    m = raw.remainder(period)
    return torch.where(m > room, period - m, m)


def render(images: torch.Tensor, positions: torch.Tensor, size: int) -> torch.Tensor:
    """Videos (N, F, 1, size, size): ``images`` (N, 1, 8, 8) pasted at ``positions`` (N, F, 2)."""
    n, f = positions.shape[:2]
    out = torch.full((n, f, 1, size, size), -1.0)
    for k in range(f):
        for i in range(n):
            r, c = int(positions[i, k, 0]), int(positions[i, k, 1])
            out[i, k, :, r:r + 8, c:c + 8] = images[i]
    return out


def generate(n: int, frames: int, size: int, split: str, seed: int):
    """(videos, classes, positions (n, frames, 2), digit images) of :func:`moving_digits`."""
    from diffusekit_sde.datasets import digits

    ex = digits(split=split, labels=True)
    g = torch.Generator().manual_seed(seed + _SPLIT_SEED[split])
    idx = torch.randint(0, len(ex.x), (n,), generator=g)
    room = size - 8
    start = torch.randint(0, room + 1, (n, 2), generator=g)
    cls = ex.cond[idx]
    pos = trajectories(start, VELOCITIES[cls], frames, room)
    return render(ex.x[idx], pos, size), cls, pos, ex.x[idx]


def moving_digits(n: int = 6000, frames: int = 5, size: int = 16, split: str = "train", seed: int = 0,
                  labels: bool = False) -> Example:
    """``Example(x=videos (n, frames, 1, size, size), cond=first frames (n, 1, size, size))``;
    with ``labels`` the condition is the pair ``(first frames, classes (n,))`` (for the
    example's feature classifier; pipelines take the first frames alone)."""
    videos, cls, _, _ = generate(n, frames, size, split, seed)
    first = videos[:, 0].clone()
    return Example(videos, (first, cls) if labels else first)


__all__ = ["moving_digits", "generate", "MovingDigitsConfig", "trajectories", "render", "VELOCITIES"]
