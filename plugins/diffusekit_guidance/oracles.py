"""Exact oracles for guidance: class-conditional Gaussian mixtures and linear-Gaussian posteriors.

Class-conditional mixture: x0 ~ sum_k pi_k N(mu_k, s_k^2 I), component k has class label l_k.
Under x_t = a x0 + c eps the responsibilities are w_k(x_t) proportional to
pi_k N(x_t; a mu_k, (a^2 s_k^2 + c^2) I) and

* E[x0 | x_t, y] = sum_{k: l_k = y} w_k post_k / sum_{k: l_k = y} w_k,
  post_k = mu_k + a s_k^2 / v_k (x_t - a mu_k)  (the unconditional case sums over all k);
* log p(y | x_t) = logsumexp_{k: l_k = y} log w_k - logsumexp_k log w_k, the exact noisy
  classifier (Dhariwal & Nichol 2021 train one; here it is closed form).

Linear-Gaussian inverse problem: y = A x0 + sigma_y n with a Gaussian-mixture prior has the
mixture posterior with, per component, precision P_k = I / s_k^2 + A^T A / sigma_y^2, mean
m_k = P_k^{-1} (mu_k / s_k^2 + A^T y / sigma_y^2) and weight proportional to
pi_k N(y; A mu_k, s_k^2 A A^T + sigma_y^2 I) (Bishop 2006, eqs. 2.113-2.117).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffusekit.network import Network
from diffusekit.random import GeneratorLike, rand, randn
from diffusekit.testing import GaussianMixture


class ClassConditionalMixture:
    """A Gaussian mixture whose components carry class labels (labels (K,) in [0, C))."""

    def __init__(self, mixture: GaussianMixture, labels):
        self.mixture = mixture
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.shape != (mixture.weights.shape[0],):
            raise ValueError(f"labels: need one label per component ({mixture.weights.shape[0]}), "
                             f"got shape {tuple(self.labels.shape)}")
        self.num_classes = int(self.labels.max()) + 1

    @property
    def dim(self) -> int:
        return self.mixture.dim

    @property
    def class_probs(self) -> torch.Tensor:
        return torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, self.labels, self.mixture.weights)

    def conditional(self, y: int) -> GaussianMixture:
        keep = self.labels == y
        m = self.mixture
        return GaussianMixture(m.means[keep], m.stds[keep], m.weights[keep])

    def sample(self, labels: torch.Tensor, generator: GeneratorLike = None, dtype=torch.float32) -> torch.Tensor:
        """x0 ~ p(x0 | y) for each label (per-sample generators allowed)."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        m = self.mixture
        n = labels.shape[0]
        w = m.weights[None].expand(n, -1) * (self.labels[None] == labels[:, None])
        cdf = torch.cumsum(w / w.sum(1, keepdim=True), 1)
        u = rand((n, 1), generator, "cpu", torch.float64)
        k = torch.searchsorted(cdf, u).squeeze(1).clamp_max(len(m.weights) - 1)
        z = randn((n, self.dim), generator, "cpu", torch.float64)
        return (m.means[k] + m.stds[k, None] * z).to(dtype)

    def log_responsibilities(self, x: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Unnormalised log w_k(x_t), shape (B, K); a, c of shape (B,)."""
        m = self.mixture
        mu, s2 = m.means.to(x.device), (m.stds ** 2).to(x.device)
        v = a[:, None] ** 2 * s2[None] + c[:, None] ** 2
        diff = x[:, None, :] - a[:, None, None] * mu[None]
        return (torch.log(m.weights.to(x.device))[None] - 0.5 * (diff ** 2).sum(-1) / v
                - 0.5 * m.dim * torch.log(v))

    def posterior_mean(self, x: torch.Tensor, a: torch.Tensor, c: torch.Tensor,
                       labels: torch.Tensor | None) -> torch.Tensor:
        """E[x0 | x_t, y]; rows whose label is ``num_classes`` (or labels None) are unconditional."""
        m = self.mixture
        mu, s2 = m.means.to(x.device), (m.stds ** 2).to(x.device)
        logw = self.log_responsibilities(x, a, c)
        if labels is not None:
            lab = labels.to(x.device).long()
            match = (self.labels.to(x.device)[None] == lab[:, None]) | (lab[:, None] >= self.num_classes)
            logw = logw.masked_fill(~match, -math.inf)
        w = torch.softmax(logw, 1)
        v = a[:, None] ** 2 * s2[None] + c[:, None] ** 2
        post = mu[None] + (a[:, None] * s2[None] / v)[:, :, None] * (x[:, None, :] - a[:, None, None] * mu[None])
        return (w[:, :, None] * post).sum(1)

    def log_class_posterior(self, x: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """log p(y | x_t) for every class, shape (B, C)."""
        logw = self.log_responsibilities(x, a, c)
        onehot = self.labels.to(x.device)[None, :] == torch.arange(self.num_classes, device=x.device)[:, None]
        per = torch.logsumexp(logw[:, None, :].masked_fill(~onehot[None], -math.inf), -1)
        return per - torch.logsumexp(logw, 1, keepdim=True)

    def purity(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of samples whose most likely component (at t = 0) has the requested label."""
        m = self.mixture
        logw = self.log_responsibilities(x.to(torch.float64), torch.ones(x.shape[0], dtype=torch.float64),
                                         torch.zeros(x.shape[0], dtype=torch.float64))
        return float((self.labels[logw.argmax(1)] == labels).double().mean())


class ClassConditionalOracle(Network):
    """Exact x0-network for a :class:`ClassConditionalMixture` (use with the ``x0``
    parameterization and the ``label`` conditioner, ``embed_dim = 0``); label C = null."""

    def __init__(self, data: ClassConditionalMixture, process):
        super().__init__()
        self.data = data
        self.process = process
        self.sample_shape = (data.dim,)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        a, _, c = self.process.coefficients(t.to(torch.float64))
        return self.data.posterior_mean(x.to(torch.float64), a, c, cond).to(x.dtype)

    def example_inputs(self, batch: int = 4):
        """(x_t, t, labels) with t halfway through the process's time range."""
        g = torch.Generator().manual_seed(0)
        t = torch.full((batch,), 0.5 * (float(self.process.t_min) + float(self.process.t_max)))
        labels = torch.randint(0, self.data.num_classes, (batch,), generator=g)
        return torch.randn(batch, self.data.dim, generator=g), t, labels


class ExactClassifier(nn.Module):
    """The exact noisy classifier logits log p(y | x_t) of a class-conditional mixture."""

    def __init__(self, data: ClassConditionalMixture, process):
        super().__init__()
        self.data = data
        self.process = process

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, _, c = self.process.coefficients(t.to(torch.float64))
        return self.data.log_class_posterior(x.to(torch.float64), a, c).to(x.dtype)


class FullGaussianMixture:
    """A mixture of full-covariance Gaussians (means (K, d), covs (K, d, d), weights (K,))."""

    def __init__(self, means, covs, weights):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        w = torch.as_tensor(weights, dtype=torch.float64)
        self.weights = w / w.sum()

    def sample(self, n: int, generator: GeneratorLike = None, dtype=torch.float32) -> torch.Tensor:
        u = rand((n,), generator, "cpu", torch.float64)
        k = torch.searchsorted(torch.cumsum(self.weights, 0), u).clamp_max(len(self.weights) - 1)
        z = randn((n, self.means.shape[1]), generator, "cpu", torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        return (self.means[k] + (chol[k] @ z[:, :, None])[..., 0]).to(dtype)


def linear_gaussian_posterior(prior: GaussianMixture, A: torch.Tensor, y: torch.Tensor,
                              sigma_y: float) -> FullGaussianMixture:
    """Exact p(x0 | y) for y = A x0 + sigma_y n, x0 ~ prior (one measurement y of shape (m,))."""
    A = torch.as_tensor(A, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    d = prior.dim
    eye = torch.eye(d, dtype=torch.float64)
    means, covs, logw = [], [], []
    for mu, s, pi in zip(prior.means, prior.stds, prior.weights):
        prec = eye / s ** 2 + A.T @ A / sigma_y ** 2
        cov = torch.linalg.inv(prec)
        cov = (cov + cov.T) / 2
        means.append(cov @ (mu / s ** 2 + A.T @ y / sigma_y ** 2))
        covs.append(cov)
        s_y = s ** 2 * A @ A.T + sigma_y ** 2 * torch.eye(A.shape[0], dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(A @ mu, covariance_matrix=s_y)
        logw.append(torch.log(pi) + dist.log_prob(y))
    w = torch.softmax(torch.stack(logw), 0)
    return FullGaussianMixture(torch.stack(means), torch.stack(covs), w)


def product_of_mixtures(p: GaussianMixture, q: GaussianMixture) -> GaussianMixture:
    """Normalised p(x) q(x) for isotropic mixtures: N(x; m1, s1^2) N(x; m2, s2^2) =
    N(m1; m2, (s1^2 + s2^2) I) N(x; (m1 s2^2 + m2 s1^2) / (s1^2 + s2^2), s1^2 s2^2 / (s1^2 + s2^2) I)."""
    m1, m2 = p.means[:, None], q.means[None]
    v1, v2 = (p.stds ** 2)[:, None], (q.stds ** 2)[None]
    vs = v1 + v2
    d = p.dim
    logw = (torch.log(p.weights)[:, None] + torch.log(q.weights)[None]
            - 0.5 * ((m1 - m2) ** 2).sum(-1) / vs - 0.5 * d * torch.log(2 * math.pi * vs))
    means = (m1 * v2[..., None] + m2 * v1[..., None]) / vs[..., None]
    stds = torch.sqrt(v1 * v2 / vs)
    return GaussianMixture(means.reshape(-1, d), stds.reshape(-1), torch.softmax(logw.reshape(-1), 0))


__all__ = ["ClassConditionalMixture", "ClassConditionalOracle", "ExactClassifier", "FullGaussianMixture",
           "linear_gaussian_posterior", "product_of_mixtures"]
