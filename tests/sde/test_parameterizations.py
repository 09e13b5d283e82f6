"""Loss weightings of the Gaussian parameterizations (Song et al. 2021, eq. 7; docs/plugins/sde.md)."""

import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit.denoiser import Denoiser
from diffusekit.testing import check_parameterization


class Affine(nn.Module):
    """A fixed smooth network f(x, t) = W x + t b (no training: a stand-in predictor)."""

    def __init__(self, dim=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(dim, dim, generator=g) * 0.3)
        self.b = nn.Parameter(torch.randn(dim, generator=g))

    def forward(self, x, t, cond=None):
        return x @ self.w.T + t[:, None] * self.b


def _loss(process, param, x0, seed, **cfg):
    par = dk.create("parameterization", param, **cfg)
    return par.loss(Denoiser(Affine(), par, process), x0, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ddpm"])
def test_prediction_conversions(name):
    check_parameterization(dk.create("process", name), atol=1e-6)


@pytest.mark.parametrize("param", ["eps", "score"])
def test_native_is_sigma2_weighting_for_eps_and_score(param):
    """eps: |eps_hat - eps|^2; score: |c s + eps|^2 -- both are the sigma^2 weighting."""
    p = dk.create("process", "vp")
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_loss(p, param, x0, 5), _loss(p, param, x0, 5, weighting="sigma2"))


@pytest.mark.parametrize("param", ["x0", "v"])
def test_sigma2_weighting_in_terms_of_native_loss(param):
    """For one sample: x0-prediction |eps_hat - eps|^2 = (a/c)^2 |x0_hat - x0|^2;
    v-prediction (v = (a eps - c x0) / r, r^2 = a^2 + c^2) |eps_hat - eps|^2 = a^2 / r^4 |v_hat - v|^2."""
    p = dk.create("process", "vp")
    x0 = torch.randn(1, 3, generator=torch.Generator().manual_seed(2))
    t = p.sample_time(1, torch.Generator().manual_seed(9))  # the first draw of the loss's generator
    a, _, c = (float(v) for v in p.coefficients(t))
    native = _loss(p, param, x0, 9)
    sigma2 = _loss(p, param, x0, 9, weighting="sigma2")
    factor = (a / c) ** 2 if param == "x0" else a * a / (a * a + c * c) ** 2
    torch.testing.assert_close(sigma2, native * factor, rtol=1e-4, atol=1e-7)


def test_likelihood_weighting_and_importance_sampling_are_consistent():
    """lambda = g^2: the importance-sampled loss (t ~ g^2/c^2, weight Z) is an unbiased
    estimate of the likelihood-weighted loss; its times follow the density g^2/c^2."""
    p = dk.create("process", "vp")
    x0 = torch.randn(4000, 3, generator=torch.Generator().manual_seed(3))
    lik = [float(_loss(p, "eps", x0, s, weighting="likelihood").detach()) for s in range(6)]
    isw = [float(_loss(p, "eps", x0, s, weighting="likelihood", importance_sampling=True).detach())
           for s in range(6)]
    m1, m2 = sum(lik) / 6, sum(isw) / 6
    assert abs(m1 - m2) / m2 < 0.15
    par = dk.create("parameterization", "eps", weighting="likelihood", importance_sampling=True)
    from diffusekit_sde.parameterizations import _ImportanceSampler

    sampler = _ImportanceSampler(p, 1e-5)
    t = sampler.sample(20_000, torch.Generator().manual_seed(0), "cpu").double()
    grid = torch.logspace(-5, 0, 400_001, dtype=torch.float64)
    w = p.diffusion(grid) ** 2 / p.coefficients(grid)[2] ** 2
    cdf = torch.cumsum((w[1:] + w[:-1]) / 2 * grid.diff(), 0)
    cdf, grid = cdf / cdf[-1], grid[1:]
    for q in (0.1, 0.5, 0.9):  # empirical quantiles match the density's quantiles
        tq = grid[torch.searchsorted(cdf, torch.tensor(q, dtype=torch.float64))]
        assert abs(float((t <= tq).double().mean()) - q) < 0.015
    assert par.config.importance_sampling


def test_likelihood_weight_is_g2_over_c2():
    """For one sample, the likelihood-weighted loss is g(t)^2 / c(t)^2 times the sigma^2 one."""
    p = dk.create("process", "subvp")
    x0 = torch.randn(1, 3, generator=torch.Generator().manual_seed(4))
    t = p.sample_time(1, torch.Generator().manual_seed(11))
    w = float(p.diffusion(t) ** 2 / p.coefficients(t)[2] ** 2)
    torch.testing.assert_close(_loss(p, "eps", x0, 11, weighting="likelihood"),
                               w * _loss(p, "eps", x0, 11, weighting="sigma2"), rtol=1e-4, atol=1e-7)
