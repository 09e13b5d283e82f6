"""Exact denoisers for Gaussian-mixture data under any AdditiveGaussian process.

Data x0 ~ sum_k pi_k N(mu_k, s_k^2 I). With z = x_t - b y = a x0 + c eps:
z | k ~ N(a mu_k, (a^2 s_k^2 + c^2) I), responsibilities w_k proportional to
pi_k N(z; a mu_k, v_k I), and E[x0 | z] = sum_k w_k (mu_k + a s_k^2 / v_k (z - a mu_k)).
A single Gaussian is the K = 1 case.
"""

from __future__ import annotations

import math


import torch

from ..network import Network
from ..process import AdditiveGaussian, bcast
from ..random import GeneratorLike, rand, randn


class GaussianMixture:
    """An isotropic Gaussian mixture in R^d (means (K, d), stds (K,), weights (K,))."""

    def __init__(self, means, stds, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim == 1:
            self.means = self.means[None]
        k = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def ring(cls, k: int = 8, radius: float = 1.5, std: float = 0.1) -> "GaussianMixture":
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        return cls(torch.stack([torch.cos(ang), torch.sin(ang)], 1) * radius, std)

    @classmethod
    def random(cls, k: int, dim: int, seed: int = 0, spread: float = 1.0, std: float = 0.2) -> "GaussianMixture":
        g = torch.Generator().manual_seed(seed)
        means = torch.randn(k, dim, generator=g, dtype=torch.float64) * spread
        weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.5
        return cls(means, std, weights)

    def sample(self, n: int, generator: GeneratorLike = None, dtype=torch.float32) -> torch.Tensor:
        u = rand((n,), generator, "cpu", torch.float64)
        k = torch.searchsorted(torch.cumsum(self.weights, 0), u).clamp_max(len(self.weights) - 1)
        z = randn((n, self.dim), generator, "cpu", torch.float64)
        return (self.means[k] + self.stds[k, None] * z).to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        d = self.dim
        var = self.stds ** 2
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        logp = torch.log(self.weights)[None] - 0.5 * sq / var[None] - 0.5 * d * torch.log(2 * math.pi * var)[None]
        return torch.logsumexp(logp, 1)

    def responsibilities(self, z: torch.Tensor, a: torch.Tensor, c: torch.Tensor):
        """For z = a x0 + c eps (float64, a and c of shape (B,)): the posterior component weights
        w (B, K), the residuals z - a mu_k (B, K, d) and the marginal variances
        v_k = a^2 s_k^2 + c^2 (B, K); the shared part of every exact mixture oracle."""
        mu, s2 = self.means.to(z.device), (self.stds ** 2).to(z.device)
        a_, c_ = a[:, None], c[:, None]
        v = a_ ** 2 * s2[None] + c_ ** 2
        diff = z[:, None, :] - a_[:, :, None] * mu[None]
        logw = (torch.log(self.weights.to(z.device))[None] - 0.5 * (diff ** 2).sum(-1) / v
                - 0.5 * self.dim * torch.log(v))
        return torch.softmax(logw, dim=1), diff, v

    def marginal(self, a: float, c: float) -> "GaussianMixture":
        """Distribution of a x0 + c eps (b = 0)."""
        return GaussianMixture(self.means * a, torch.sqrt(a * a * self.stds ** 2 + c * c), self.weights)


class MixtureOracle(Network):
    """Network returning the exact E[x0 | x_t] (use with the ``x0`` parameterization)."""

    def __init__(self, mixture: GaussianMixture, process: AdditiveGaussian):
        super().__init__()
        self.mixture = mixture
        self.process = process
        self.sample_shape = (mixture.dim,)
        self.register_buffer("_dummy", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        dtype = x.dtype
        x64 = x.to(torch.float64)
        t64 = t.to(torch.float64)
        a, b, c = self.process.coefficients(t64)
        y = self.process.endpoint(cond, x64)
        z = x64 if y is None else x64 - bcast(b, x64) * y.to(torch.float64)
        m = self.mixture
        w, diff, v = m.responsibilities(z, a, c)
        mu, s2 = m.means.to(x.device), (m.stds ** 2).to(x.device)
        post = mu[None] + (a[:, None] * s2[None] / v)[:, :, None] * diff
        return (w[:, :, None] * post).sum(1).to(dtype)

    def example_inputs(self, batch: int = 4):
        """(x_t, t, None) with t halfway through the process's time range."""
        g = torch.Generator().manual_seed(0)
        t = torch.full((batch,), 0.5 * (float(self.process.t_min) + float(self.process.t_max)))
        return torch.randn(batch, self.mixture.dim, generator=g), t, None


def oracle_pipeline(process, mixture: GaussianMixture, sampler=None, parameterization: str = "x0"):
    """A pipeline whose denoiser is the exact oracle (no training)."""
    from ..pipeline import Pipeline

    return Pipeline(process=process, network=MixtureOracle(mixture, process),
                    parameterization=parameterization, sampler=sampler, sample_shape=(mixture.dim,))


