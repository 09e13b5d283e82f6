"""Exact denoiser for discrete data under the PFGM++ kernel (closed form, no training).

Data y ~ sum_k pi_k delta(y_k) in R^N. Since the kernel's normaliser depends only on r, Bayes'
rule gives (the PFGM++ kernel of Xu et al. 2023 with r = sigma sqrt(D))

    D(x, sigma) = E[y | x] = sum_k w_k y_k,
    w_k proportional to pi_k (|x - y_k|^2 + sigma^2 D)^(-(N + D) / 2),

computed as a softmax of log-weights in float64. For D = inf the weights are the Gaussian
ones, w_k proportional to pi_k exp(-|x - y_k|^2 / (2 sigma^2)) (EDM's ideal denoiser).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from diffusekit.network import Network

from .processes import _SigmaTime


def discrete_log_weights(x: torch.Tensor, sigma: torch.Tensor, points: torch.Tensor, weights: torch.Tensor,
                         D: float) -> torch.Tensor:
    """Unnormalised log w_k of shape (B, K); x (B, ...), sigma (B,), points (K, ...), float64."""
    xf = x.reshape(x.shape[0], -1).to(torch.float64)
    yf = points.reshape(points.shape[0], -1).to(device=x.device, dtype=torch.float64)
    N = xf.shape[1]
    sig = sigma.to(device=x.device, dtype=torch.float64).reshape(-1, 1)
    sq = torch.cdist(xf, yf).pow(2)  # (B, K)
    logpi = torch.log(weights.to(device=x.device, dtype=torch.float64))[None]
    if math.isinf(D):
        return logpi - 0.5 * sq / sig ** 2
    # (|x-y|^2 + r^2)^(-(N+D)/2) up to the k-independent factor r^-(N+D): log1p(|x-y|^2 / r^2)
    return logpi - 0.5 * (N + D) * torch.log1p(sq / (sig ** 2 * D))


def discrete_denoiser(x: torch.Tensor, sigma: torch.Tensor, points: torch.Tensor, weights: torch.Tensor,
                      D: float) -> torch.Tensor:
    """E[y | x] under the kernel with augmented dimension D (float64, shape of x)."""
    w = torch.softmax(discrete_log_weights(x, sigma, points, weights, D), dim=1)
    yf = points.reshape(points.shape[0], -1).to(device=x.device, dtype=torch.float64)
    return (w @ yf).reshape(x.shape)


class DiscreteOracle(Network):
    """Network returning the exact D(x, sigma) for discrete data; use it with
    ``dk.create("parameterization", "edm", precondition=False)`` so that it receives sigma."""

    def __init__(self, points: torch.Tensor, weights: torch.Tensor | None = None, D: float = math.inf):
        super().__init__()
        points = torch.as_tensor(points, dtype=torch.float64)
        w = torch.ones(points.shape[0], dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("weights", w / w.sum(), persistent=False)
        self.D = float(D)
        self.sample_shape = tuple(points.shape[1:])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return discrete_denoiser(x, sigma, self.points, self.weights, self.D).to(x.dtype)

    def example_inputs(self, batch: int = 4):
        """(x, sigma, None) with sigma = 1."""
        g = torch.Generator().manual_seed(0)
        return torch.randn(batch, *self.sample_shape, generator=g), torch.ones(batch), None


def oracle_pipeline(process, points: torch.Tensor, weights: torch.Tensor | None = None, sampler: Any = None):
    """A pipeline whose denoiser is the exact discrete-data denoiser for ``process``'s D."""
    from diffusekit.api import create
    from diffusekit.pipeline import Pipeline

    D = process.D if isinstance(process, _SigmaTime) else math.inf  # the kernel's D (inf: Gaussian)
    net = DiscreteOracle(points, weights, D)
    return Pipeline(process=process, network=net, sampler=sampler, sample_shape=net.sample_shape,
                    parameterization=create("parameterization", "edm", precondition=False))
