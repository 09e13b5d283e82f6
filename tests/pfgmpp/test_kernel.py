"""Closed-form checks of the PFGM++ perturbation kernel (docs/plugins/pfgmpp.md)."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import roots_legendre

from diffusekit_pfgmpp.kernel import kernel_log_prob, radius_ratio, sample_gamma, sample_perturbation


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape_param", [0.5, 1.0, 3.5, 64.0, 5e5])
def test_gamma_sampler_matches_scipy(shape_param):
    x = sample_gamma(shape_param, 8000, _gen(1))
    assert x.dtype == torch.float64 and bool((x > 0).all())
    assert stats.kstest(x.numpy(), stats.gamma(shape_param).cdf).pvalue > 1e-3


@pytest.mark.parametrize("N,D", [(1, 3.0), (2, 4.0), (8, 16.0), (64, 128.0)])
def test_radius_is_beta_prime(N, D):
    """R^2 / r^2 = Z / (1 - Z) with Z ~ Beta(N/2, D/2)."""
    ratio = radius_ratio(N, D, 8000, _gen(2))
    z = (ratio ** 2 / (1 + ratio ** 2)).numpy()
    assert stats.kstest(z, stats.beta(N / 2, D / 2).cdf).pvalue > 1e-3


@pytest.mark.parametrize("N,D,sigma", [(1, 8.0, 0.3), (3, 16.0, 2.0), (16, 64.0, 1.0), (64, 128.0, 5.0)])
def test_second_moment(N, D, sigma):
    """E|n|^2 = r^2 N / (D - 2) with r = sigma sqrt(D)."""
    n = sample_perturbation((40000, N), torch.tensor(sigma), D, _gen(3))
    sq = n.pow(2).sum(1)
    expected = sigma ** 2 * D * N / (D - 2)
    se = float(sq.std()) / math.sqrt(len(sq))
    assert abs(float(sq.mean()) - expected) < 5 * se
    assert abs(float(sq.mean()) / expected - 1) < 0.03


@pytest.mark.parametrize("N,D,sigma", [(1, 2.0, 1.0), (2, 5.0, 0.5), (8, 16.0, 3.0), (32, 128.0, 1.0)])
def test_student_t_equivalence(N, D, sigma):
    """Beta-prime construction == multivariate Student-t (nu = D, scale sigma):
    each coordinate ~ t_D(scale sigma) and |n|^2 / (N sigma^2) ~ F(N, D)."""
    n = sample_perturbation((6000, N), torch.tensor(sigma), D, _gen(4))
    assert stats.kstest(n[:, 0].numpy(), stats.t(D, scale=sigma).cdf).pvalue > 1e-3
    f = (n.pow(2).sum(1) / (N * sigma ** 2)).numpy()
    assert stats.kstest(f, stats.f(N, D).cdf).pvalue > 1e-3
    # the wrong alignment r = sigma (no sqrt(D)) would be rejected outright
    f_wrong = f / D  # what r = sigma instead of sigma sqrt(D) would produce
    assert stats.kstest(f_wrong, stats.f(N, D).cdf).pvalue < 1e-6


def test_direction_is_uniform_and_per_sample_sigma():
    sig = torch.tensor([0.5, 2.0, 8.0]).repeat_interleave(4000)
    n = sample_perturbation((len(sig), 3), sig, 12.0, _gen(5))
    u = n / n.norm(dim=1, keepdim=True)
    assert float(u.mean(0).abs().max()) < 0.03  # uniform on the sphere: mean 0
    # per-sample sigma: |n| / sigma has the same law in each block
    f = (n.pow(2).sum(1) / (3 * sig.double() ** 2)).numpy()
    for b in range(3):
        assert stats.kstest(f[b * 4000:(b + 1) * 4000], stats.f(3, 12.0).cdf).pvalue > 1e-3


def _tan_rule(n: int, scale: float):
    """Gauss-Legendre nodes/weights on R via x = scale tan(a), a in (-pi/2, pi/2)."""
    a, w = roots_legendre(n)
    a, w = a * math.pi / 2, w * math.pi / 2
    x = scale * np.tan(a)
    return torch.from_numpy(x), torch.from_numpy(w * scale / np.cos(a) ** 2)


@pytest.mark.parametrize("D", [1.0, 2.0, 5.0, 100.0, math.inf])
@pytest.mark.parametrize("sigma", [0.3, 2.0])
def test_kernel_normalises_in_1d(D, sigma):
    x, w = _tan_rule(4000, sigma)
    val = float((torch.exp(kernel_log_prob(x[:, None], sigma, D)) * w).sum())
    assert abs(val - 1.0) < 1e-6


@pytest.mark.parametrize("D", [1.0, 3.0, 50.0, math.inf])
@pytest.mark.parametrize("sigma", [0.7, 3.0])
def test_kernel_normalises_in_2d(D, sigma):
    x, w = _tan_rule(1500, sigma)
    grid = torch.stack(torch.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    val = float((torch.exp(kernel_log_prob(grid, sigma, D)).reshape(len(x), len(x)) * w[:, None] * w[None]).sum())
    assert abs(val - 1.0) < 1e-5


def test_kernel_density_matches_samples():
    """The closed-form density and the sampler describe the same law (1-D histogram check)."""
    D, sigma = 4.0, 1.0
    n = sample_perturbation((50000, 1), torch.tensor(sigma), D, _gen(6))[:, 0]
    edges = torch.linspace(-4, 4, 17, dtype=torch.float64)
    counts = torch.histc(n, bins=16, min=-4, max=4) / len(n)
    for lo, hi, c in zip(edges[:-1], edges[1:], counts):
        mass = integrate.quad(lambda x: math.exp(float(kernel_log_prob(torch.tensor([[x]]), sigma, D))),
                              float(lo), float(hi))[0]
        assert abs(float(c) - mass) < 5 * math.sqrt(mass / len(n)) + 1e-4


def test_large_D_agrees_with_gaussian_kernel():
    """D -> inf: the kernel tends to N(0, sigma^2 I) (r = sigma sqrt(D) alignment)."""
    sigma, N = 1.5, 4
    x = torch.randn(50, N, generator=_gen(7), dtype=torch.float64) * 2
    lp_big = kernel_log_prob(x, sigma, 1e8)
    lp_gauss = kernel_log_prob(x, sigma, math.inf)
    ref = torch.from_numpy(stats.multivariate_normal(mean=[0] * N, cov=sigma ** 2).logpdf(x.numpy()))
    assert torch.allclose(lp_gauss, ref, atol=1e-10)
    assert torch.allclose(lp_big, ref, atol=1e-5)
    n = sample_perturbation((8000, N), torch.tensor(sigma), 1e6, _gen(8))
    chi2 = (n.pow(2).sum(1) / sigma ** 2).numpy()
    assert stats.kstest(chi2, stats.chi2(N).cdf).pvalue > 1e-3
    # ... while a moderate D is clearly heavier-tailed than the Gaussian
    n8 = sample_perturbation((8000, N), torch.tensor(sigma), 8.0, _gen(9))
    assert stats.kstest((n8.pow(2).sum(1) / sigma ** 2).numpy(), stats.chi2(N).cdf).pvalue < 1e-6


def test_per_sample_generators_are_batch_invariant():
    sig = torch.tensor([0.5, 1.0, 2.0, 4.0])
    full = sample_perturbation((4, 6), sig, 16.0, [torch.Generator().manual_seed(s) for s in range(4)])
    for i in range(4):
        one = sample_perturbation((1, 6), sig[i:i + 1], 16.0, [torch.Generator().manual_seed(i)])
        assert torch.equal(full[i:i + 1], one)


def test_excess_kurtosis_per_coordinate():
    """Each coordinate is t_D(scale sigma): excess kurtosis 6 / (D - 4) (0.3 at D = 24; 0 for a Gaussian)."""
    n = sample_perturbation((50000, 8), torch.tensor(1.0), 24.0, _gen(10))
    k = sum(stats.kurtosis(n[:, j].numpy()) for j in range(8)) / 8
    assert abs(k - 6 / 20) < 0.06
