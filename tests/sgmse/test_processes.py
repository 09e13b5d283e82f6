"""Closed-form checks of the OUVE and Schroedinger-bridge processes (docs/plugins/sgmse.md)."""

import math

import pytest
import torch
from scipy.integrate import quad

import diffusekit as dk
from diffusekit.errors import ConfigError, ShapeError
from diffusekit_sgmse.processes import OUVE, SchroedingerBridge


def test_ouve_variance_matches_quadrature():
    p = OUVE()
    gamma = p.config.theta
    for t in (0.03, 0.2, 0.5, 0.8, 1.0):
        g2 = lambda s: float(p.diffusion(torch.tensor(s, dtype=torch.float64))) ** 2
        var, _ = quad(lambda s: math.exp(-2 * gamma * (t - s)) * g2(s), 0, t, epsabs=1e-13, epsrel=1e-12)
        got = float(p.sigma(torch.tensor(t, dtype=torch.float64))) ** 2
        assert got == pytest.approx(var, rel=1e-9)


def test_ouve_mean_and_prior_scale():
    p = OUVE()
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    a, b, c = p.coefficients(t)
    assert torch.allclose(a, torch.exp(-1.5 * t)) and torch.allclose(a + b, torch.ones(3, dtype=torch.float64))
    assert float(c[0]) == 0.0
    # sigma(1) with the paper defaults (theta 1.5, smin 0.05, smax 0.5)
    lam = math.log(10)
    s1 = math.sqrt(0.05 ** 2 * math.exp(-3) * math.expm1(2 * (1.5 + lam)) * lam / (1.5 + lam))
    assert float(c[2]) == pytest.approx(s1, rel=1e-12)
    assert float(c[2]) == pytest.approx(0.389, abs=2e-3)


@pytest.mark.parametrize("cls", [OUVE, SchroedingerBridge])
def test_coefficient_derivatives_match_finite_differences(cls):
    p = cls()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    exact = p.coefficient_derivatives(t)
    fd = [(u - v) / (2 * h) for u, v in zip(p.coefficients(t + h), p.coefficients(t - h))]
    for e, f in zip(exact, fd):
        assert torch.allclose(e, f, rtol=1e-6, atol=1e-7)


def test_ouve_variance_solves_moment_ode():
    """d(sigma^2)/dt = -2 gamma sigma^2 + g^2 (the SDE's second-moment equation)."""
    p = OUVE()
    t = torch.linspace(0.05, 1.0, 20, dtype=torch.float64)
    _, _, c = p.coefficients(t)
    _, _, dc = p.coefficient_derivatives(t)
    assert torch.allclose(2 * c * dc, -2 * 1.5 * c ** 2 + p.diffusion(t) ** 2, rtol=1e-10)


def test_complex_perturbation_statistics():
    p = OUVE()
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 0.3 - 0.2j, dtype=torch.complex128)
    y = torch.full((n, 1), -0.5 + 0.7j, dtype=torch.complex128)
    t = torch.full((n,), 0.6, dtype=torch.float64)
    pert = p.perturb(x0, t, cond=y, generator=g)
    a, b, c = (float(v) for v in p.coefficients(torch.tensor(0.6, dtype=torch.float64)))
    mean = a * x0[0, 0] + b * y[0, 0]
    d = pert.x_t[:, 0] - mean
    assert abs(d.mean()) < 5 * c / math.sqrt(n)
    assert d.real.var().item() == pytest.approx(c * c / 2, rel=0.02)
    assert d.imag.var().item() == pytest.approx(c * c / 2, rel=0.02)
    assert abs((d.real * d.imag).mean().item()) < 0.01 * c * c
    assert torch.allclose(pert.x_t, a * x0 + b * y + c * pert.noise)


def test_ouve_drift_and_prior():
    p = OUVE()
    y = torch.randn(3, 4, 8, dtype=torch.complex64)
    x = torch.randn_like(y)
    t = torch.rand(3)
    assert torch.allclose(p.drift(x, t, y), 1.5 * (y - x))
    z = p.prior(3, (4, 8), cond=y, generator=torch.Generator().manual_seed(0))
    assert z.shape == y.shape and z.dtype == y.dtype
    big = p.prior(4000, (1, 1), cond=torch.zeros(4000, 1, 1, dtype=torch.complex64),
                  generator=torch.Generator().manual_seed(1))
    s1 = float(p.sigma(torch.tensor(1.0)))
    assert big.abs().pow(2).mean().item() == pytest.approx(s1 ** 2, rel=0.06)
    # StoRM stack: the last entry (y_hat) is the mean-reversion target
    stack = torch.stack([y, torch.zeros_like(y)], 1)
    assert torch.equal(p.endpoint(stack, x), torch.zeros_like(y))


def test_missing_or_bad_condition_errors():
    p = OUVE()
    with pytest.raises(ConfigError, match="noisy spectrogram"):
        p.prior(2, (4, 8), cond=None)
    with pytest.raises(ShapeError, match="per-sample shape"):
        p.endpoint(torch.zeros(2, 4, 9, dtype=torch.complex64), torch.zeros(2, 4, 8, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="sigma_max"):
        dk.create("process", "ouve", sigma_min=0.5, sigma_max=0.1)
    with pytest.raises(ConfigError, match="unknown parameter"):
        dk.create("process", "ouve", gamma=1.0)


def test_sb_boundaries():
    p = SchroedingerBridge()
    a, b, c = p.coefficients(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert a.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert b.tolist() == pytest.approx([0.0, 1.0], abs=1e-12)
    assert c.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    a, b, c = p.coefficients(t)
    assert torch.allclose(a + b, torch.ones_like(t))
    k, cc = 2.6, 0.4
    s2 = cc * (k ** (2 * t) - 1) / (2 * math.log(k))
    sT2 = cc * (k ** 2 - 1) / (2 * math.log(k))
    assert torch.allclose(c, torch.sqrt(s2 * (sT2 - s2) / sT2), atol=1e-12)
    y = torch.randn(2, 3, 5, dtype=torch.complex64)
    assert torch.equal(p.prior(2, (3, 5), cond=y), y)


def test_registered_names():
    assert {"ouve", "sb"} <= set(dk.components("process"))
    assert {"sgmse-pc", "sgmse-ode", "storm", "sb-ode", "sb-sde", "one-step"} <= set(dk.components("sampler"))
    assert {"sgmse-score", "sgmse-x0", "predictive"} <= set(dk.components("parameterization"))
