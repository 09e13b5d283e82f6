"""The exact velocity of Gaussian-mixture data under any AdditiveGaussian path (b = 0).

Derived from the exact mixture denoiser of :mod:`diffusekit.testing.oracles`: for
x0 ~ sum_k pi_k N(mu_k, s_k^2 I) and z = a x0 + c eps, v_k = a^2 s_k^2 + c^2,
w_k proportional to pi_k N(z; a mu_k, v_k I),

    E[x0 | z]  = sum_k w_k (mu_k + a s_k^2 / v_k (z - a mu_k)),
    E[eps | z] = (z - a E[x0 | z]) / c = sum_k w_k c / v_k (z - a mu_k),

so u = a' E[x0 | z] + c' E[eps | z] = sum_k w_k (a' mu_k + (a a' s_k^2 + c c') / v_k (z - a mu_k))
[derived], where (a a' s_k^2 + c c') / v_k = v_k' / (2 v_k). Unlike the x0 / eps form this is
finite at both ends: at t = 0 (c = 0) v_k = s_k^2, at t = 1 (a = 0) v_k = c^2.
"""

from __future__ import annotations

import torch

from diffusekit.network import Network
from diffusekit.testing.oracles import GaussianMixture


class MixtureVelocity(Network):
    """Network returning the exact velocity E[u | x_t] (use with the ``velocity`` parameterization).
    Evaluated in float64."""

    def __init__(self, mixture: GaussianMixture, process):
        super().__init__()
        self.mixture = mixture
        self.process = process
        self.sample_shape = (mixture.dim,)
        self.register_buffer("_dummy", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        dtype = x.dtype
        z = x.to(torch.float64)
        t64 = t.to(torch.float64)
        a, _, c = self.process.coefficients(t64)
        da, _, dc = self.process.coefficient_derivatives(t64)
        m = self.mixture
        w, diff, v = m.responsibilities(z, a, c)
        mu, s2 = m.means.to(x.device), (m.stds ** 2).to(x.device)
        a_, c_, da_, dc_ = a[:, None], c[:, None], da[:, None], dc[:, None]  # (B, 1)
        gain = (a_ * da_ * s2[None] + c_ * dc_) / v  # (B, K)
        u = da_[:, :, None] * mu[None] + gain[:, :, None] * diff
        return (w[:, :, None] * u).sum(1).to(dtype)

    def example_inputs(self, batch: int = 4):
        g = torch.Generator().manual_seed(0)
        t = torch.full((batch,), 0.5 * (float(self.process.t_min) + float(self.process.t_max)))
        return torch.randn(batch, self.mixture.dim, generator=g), t, None


def velocity_oracle_pipeline(process, mixture: GaussianMixture, sampler=None):
    """A pipeline whose network is the exact mixture velocity (no training)."""
    from diffusekit.pipeline import Pipeline

    return Pipeline(process=process, network=MixtureVelocity(mixture, process), parameterization="velocity",
                    sampler=sampler, sample_shape=(mixture.dim,))
