"""Likelihood through the probability-flow ODE dx/dt = u (the score-SDE plugin's implementation)."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture
from diffusekit_flow import velocity_oracle_pipeline

MU = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
S = 0.6


@pytest.mark.parametrize("name,params", [("rectified-flow", {}), ("interpolant", {"path": "cosine"})])
def test_gaussian_loglik_matches_the_exact_density(name, params):
    """Gaussian data N(mu, s^2 I): log p_{t_min}(x) = log N(x; a mu, (a^2 s^2 + c^2) I) at t_min,
    within 1e-2 nats (the N(0, I) prior stands in for p at t_max = 0.999: an O(1e-3) error per
    dimension)."""
    p = dk.create("process", {"name": name, **params})
    gm = GaussianMixture(MU, S)
    pipe = velocity_oracle_pipeline(p, gm)
    x = gm.sample(16, torch.Generator().manual_seed(3), dtype=torch.float64)
    ll = pipe.log_likelihood(x, estimator="exact")
    a, _, c = (float(v) for v in p.coefficients(torch.tensor([p.t_min], dtype=torch.float64)))
    v = a * a * S * S + c * c
    exact = -0.5 * ((x - a * MU) ** 2).sum(1) / v - math.log(2 * math.pi * v)
    assert torch.allclose(ll, exact, atol=1e-2), (ll - exact).abs().max()


def test_hutchinson_agrees_with_the_exact_trace_on_average():
    p = dk.create("process", "rectified-flow")
    gm = GaussianMixture.ring(4, 1.0, 0.3)
    pipe = velocity_oracle_pipeline(p, gm)
    x = gm.sample(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = pipe.log_likelihood(x, estimator="exact", method="rk4", steps=50)
    hutch = pipe.log_likelihood(x, estimator="hutchinson", n_probes=64, method="rk4", steps=50,
                                generator=torch.Generator().manual_seed(1))
    assert torch.allclose(exact, hutch, atol=0.1), (exact, hutch)
    ref = gm.log_prob(x)  # log p of the data itself: p_{t_min} is a slightly blurred mixture
    assert torch.allclose(exact, ref, atol=0.05)
