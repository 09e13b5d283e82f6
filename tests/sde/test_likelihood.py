"""Probability-flow ODE likelihood (docs/plugins/sde.md) and Hutchinson unbiasedness."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture
from diffusekit.testing.oracles import oracle_pipeline
from diffusekit_sde.likelihood import divergence
from diffusekit_sde.ode import pf_ode_velocity

MU = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
S = 0.4


def _gauss_setup(name):
    p = dk.create("process", name)
    gauss = GaussianMixture(MU[None], S)
    pipe = oracle_pipeline(p, gauss)
    x = gauss.sample(32, torch.Generator().manual_seed(3), dtype=torch.float64)
    return p, pipe, x


def _var(p, t):
    a, _, c = (float(v) for v in p.coefficients(torch.tensor([t], dtype=torch.float64)))
    return a, a * a * S * S + c * c


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_gaussian_loglik_matches_exact_density(name):
    """Centred Gaussian data N(0, s^2 I): log p(x) from the PF-ODE equals the exact density
    log N(x; 0, v_eps I) of p_eps within 1e-3 nats/dim (the prior equals p_T up to ~1e-5)."""
    p = dk.create("process", name)
    gauss = GaussianMixture(torch.zeros(1, 3, dtype=torch.float64), S)
    pipe = oracle_pipeline(p, gauss)
    x = gauss.sample(32, torch.Generator().manual_seed(3), dtype=torch.float64)
    ll = pipe.log_likelihood(x, generator=torch.Generator().manual_seed(0))
    _, v0 = _var(p, p.t_min)
    exact = GaussianMixture(torch.zeros(1, 3, dtype=torch.float64), v0 ** 0.5).log_prob(x)
    assert float((ll - exact).abs().max()) / 3 < 1e-3


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_gaussian_loglik_matches_affine_flow(name):
    """Non-centred Gaussian data: the PF-ODE flow is affine, x_T = a_T mu + sqrt(v_T / v_eps)
    (x - a_eps mu), so the model density with the N(0, s_T^2 I) prior is known in closed form;
    the estimate matches it to 3e-4 nats/dim (RK45 at rtol = atol = 1e-5)."""
    p, pipe, x = _gauss_setup(name)
    d = x.shape[1]
    ll = pipe.log_likelihood(x, generator=torch.Generator().manual_seed(0))
    a0, v0 = _var(p, p.t_min)
    aT, vT = _var(p, 1.0)
    xT = aT * MU + (vT / v0) ** 0.5 * (x - a0 * MU)
    sp = p.prior_std()
    model = (-0.5 * d * math.log(2 * math.pi * sp * sp) - (xT ** 2).sum(1) / (2 * sp * sp)
             + 0.5 * d * math.log(vT / v0))
    assert float((ll - model).abs().max()) / d < 3e-4


def test_exact_trace_likelihood_on_gmm():
    """On a GMM (non-isotropic Jacobian) the exact-trace PF-ODE likelihood with the exact
    denoiser matches the true density log p_eps(x) of the mixture."""
    mix = GaussianMixture.random(3, 2, seed=1, spread=1.0, std=0.3)
    p = dk.create("process", "vp")
    pipe = oracle_pipeline(p, mix)
    x = mix.sample(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = pipe.log_likelihood(x, estimator="exact", rtol=1e-6, atol=1e-6)
    a, c = (float(v) for v in p.coefficients(torch.tensor([p.t_min], dtype=torch.float64))[::2])
    truth = mix.marginal(a, c).log_prob(x)
    assert float((exact - truth).abs().max()) < 2e-2


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_unbiased(probe):
    """E[eps^T J eps] = tr J: the mean over many probes of the divergence estimate at fixed
    (x, t) equals the exact trace within 4 standard errors."""
    mix = GaussianMixture.random(4, 3, seed=2, spread=1.0, std=0.3)
    p = dk.create("process", "vp")
    den = oracle_pipeline(p, mix).denoiser()
    x0 = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((1,), 0.3, dtype=torch.float64)

    def fn(z):
        return pf_ode_velocity(den, p, z, t.expand(z.shape[0]), None)[0]

    _, exact = divergence(fn, x0, "exact")
    k = 4000
    xs = x0.expand(k, 3).clone()
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(k, 3, dtype=torch.float64, generator=g)
    if probe == "rademacher":
        eps = torch.sign(eps)
    _, est = divergence(lambda z: pf_ode_velocity(den, p, z, t.expand(k), None)[0], xs, "hutchinson", eps)
    se = float(est.std()) / k ** 0.5
    assert abs(float(est.mean()) - float(exact[0])) < 4 * se + 1e-9
    assert float(est.std()) > 0  # a genuine estimator, not the trace itself


def test_dequantisation_and_bits_per_dim():
    """Dequantised bound: log P = log p(x + u) + D log Delta; bits/dim = -log P / (D ln 2)."""
    p, pipe, x = _gauss_setup("vp")
    d = x.shape[1]
    kw = dict(generator=torch.Generator().manual_seed(0), dequantize=17, data_range=(-1.0, 1.0), method="rk4",
              steps=20)
    ll = pipe.log_likelihood(x, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    bpd = pipe.log_likelihood(x, bits_per_dim=True, **kw)
    torch.testing.assert_close(bpd, -ll / (d * math.log(2)))
    # same uniform offsets, no dequantisation offset: differs by exactly D log Delta
    g = torch.Generator().manual_seed(0)
    u = (torch.rand(x.shape, generator=g, dtype=torch.float64) - 0.5) * (2 / 16)
    cont = pipe.log_likelihood(x + u, method="rk4", steps=20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ll, cont + d * math.log(2 / 16), rtol=0, atol=1e-6)


def test_likelihood_option_errors():
    _, pipe, x = _gauss_setup("vp")
    with pytest.raises(dk.ConfigError, match="estimator"):
        pipe.log_likelihood(x, estimator="skilling")
    with pytest.raises(dk.ConfigError, match="data_range"):
        pipe.log_likelihood(x, dequantize=256, data_range=(1.0, -1.0))
