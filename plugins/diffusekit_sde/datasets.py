"""Built-in datasets: 2-D toys and scikit-learn's 8x8 digits. Deterministic given ``seed``;
``split`` selects disjoint random streams (train / test)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.state import Example

_SPLIT_OFFSET = {"train": 0, "test": 1_000_003, "val": 2_000_003}


class ToyConfig(ComponentConfig):
    n: int = Field(10_000, ge=1, description="number of points")
    split: Literal["train", "test", "val"] = "train"
    seed: int = 0


def _gen(seed: int, split: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed + _SPLIT_OFFSET[split])


def gaussian_mixture(n: int = 10_000, split: str = "train", seed: int = 0) -> torch.Tensor:
    """8 Gaussians (std 0.1) on a circle of radius 2 scaled into [-1.5, 1.5]."""
    g = _gen(seed, split)
    k = torch.randint(0, 8, (n,), generator=g)
    ang = k.double() * 2 * math.pi / 8
    centers = torch.stack([torch.cos(ang), torch.sin(ang)], 1) * 1.5
    return (centers + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def checkerboard(n: int = 10_000, split: str = "train", seed: int = 0) -> torch.Tensor:
    """4x4 checkerboard on [-2, 2]^2 (8 occupied squares)."""
    g = _gen(seed, split)
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2_ = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g) * 2.0
    x2 = x2_ + (torch.floor(x1) % 2)
    return torch.stack([x1, x2], 1).float()


def moons(n: int = 10_000, split: str = "train", seed: int = 0) -> torch.Tensor:
    """Two interleaving half circles (scikit-learn's make_moons), standardised."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=n, noise=0.05, random_state=seed + _SPLIT_OFFSET[split])
    x = (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    return torch.from_numpy(x).float()


def swiss_roll(n: int = 10_000, split: str = "train", seed: int = 0) -> torch.Tensor:
    """2-D swiss roll (scikit-learn's make_swiss_roll, x and z), scaled to about [-1.5, 1.5]."""
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n_samples=n, noise=0.3, random_state=seed + _SPLIT_OFFSET[split])
    return torch.from_numpy(x[:, [0, 2]] / 8.0).float()


class DigitsConfig(ComponentConfig):
    split: Literal["train", "test"] = "train"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    labels: bool = Field(False, description="return Example(x=images, cond=labels)")


def digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0, labels: bool = False):
    """scikit-learn's 8x8 digits (1,797 images), as (N, 1, 8, 8) in [-1, 1]; with ``labels`` an
    ``Example(x=images, cond=labels)``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float() / 16.0 * 2 - 1
    y = torch.from_numpy(d.target).long()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * test_fraction))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    xs = x[idx].unsqueeze(1)
    return Example(xs, y[idx]) if labels else xs
