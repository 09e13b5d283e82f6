"""Distribution metrics for sampler checks."""

from __future__ import annotations

import torch


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Unbiased squared MMD with a sum of RBF kernels k(a, b) = exp(-|a-b|^2 / (2 h^2)).

    Bandwidths are relative to the median pairwise distance of y when ``None`` is passed.
    """
    x = x.flatten(1).to(torch.float64)
    y = y.flatten(1).to(torch.float64)
    xx, yy, xy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, torch.cdist(x, y) ** 2
    n, m = x.shape[0], y.shape[0]
    total = 0.0
    for h in bandwidths:
        kxx, kyy, kxy = (torch.exp(-d / (2 * h * h)) for d in (xx, yy, xy))
        total += float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                       + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return total


def mmd_noise_floor(sampler_fn, n: int, repeats: int = 5, **kw) -> float:
    """Mean |MMD| between independent draws of the true distribution (the floor to beat)."""
    vals = [abs(mmd(sampler_fn(n, seed=2 * r), sampler_fn(n, seed=2 * r + 1), **kw)) for r in range(repeats)]
    return sum(vals) / len(vals)
