"""The pfgmpp / edm processes: configuration, sigma-time, training sigma, perturbation, prior."""

import math

import pytest
import torch
from scipy import stats

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.process import AdditiveGaussian, SigmaParameterized


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registered_with_capabilities():
    p, e = dk.create("process", "pfgmpp", D=64), dk.create("process", "edm")
    assert isinstance(p, SigmaParameterized) and not isinstance(p, AdditiveGaussian)
    assert isinstance(e, SigmaParameterized) and isinstance(e, AdditiveGaussian)
    assert p.D == 64.0 and math.isinf(e.D)
    for proc in (p, e):
        assert (proc.sigma_min, proc.sigma_max, proc.t_min, proc.t_max) == (0.002, 80.0, 0.002, 80.0)
        t = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
        assert torch.equal(proc.sigma(t), t) and torch.equal(proc.t_of_sigma(t), t)
    a, b, c = e.coefficients(torch.tensor([0.5, 3.0]))
    assert torch.equal(a, torch.ones(2)) and torch.equal(b, torch.zeros(2)) and torch.equal(c, torch.tensor([0.5, 3.0]))
    assert torch.allclose(e.t_from_log_snr(e.log_snr(torch.tensor([0.1, 7.0]))), torch.tensor([0.1, 7.0]))


@pytest.mark.parametrize("params,field", [
    ({"D": 0}, "D"), ({"D": -3}, "D"), ({"D": float("inf")}, "D"),
    ({"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_max"), ({"p_std": 0}, "p_std"), ({"d": 128}, "d"),
])
def test_bad_config_names_the_field(params, field):
    with pytest.raises(ConfigError) as err:
        dk.create("process", "pfgmpp", **params)
    assert field in str(err.value)


def test_infinite_D_points_to_edm():
    with pytest.raises(ConfigError, match="edm"):
        dk.create("process", "pfgmpp", D=math.inf)


@pytest.mark.parametrize("name", ["pfgmpp", "edm"])
def test_training_sigma_is_log_normal(name):
    proc = dk.create("process", name)
    s = proc.sample_time(20000, _gen(1))
    assert s.shape == (20000,) and bool((s > 0).all())
    assert stats.kstest(torch.log(s).double().numpy(), stats.norm(-1.2, 1.2).cdf).pvalue > 1e-3


@pytest.mark.parametrize("D", [6.0, 128.0])
def test_perturb_uses_the_kernel_with_per_sample_sigma(D):
    proc = dk.create("process", "pfgmpp", D=D)
    x0 = torch.randn(6000, 2, 5, generator=_gen(2))
    t = torch.tensor([0.1, 1.0, 10.0]).repeat(2000)
    pert = proc.perturb(x0, t, generator=_gen(3))
    n = (pert.x_t - x0).double().flatten(1)
    assert torch.allclose(pert.noise.double().flatten(1) * t.double()[:, None], n, atol=1e-4)
    f = (n.pow(2).sum(1) / (10 * t.double() ** 2)).numpy()  # |n|^2 / (N sigma^2) ~ F(N, D)
    for k in range(3):
        assert stats.kstest(f[k::3], stats.f(10, D).cdf).pvalue > 1e-3


def test_edm_perturb_is_gaussian():
    proc = dk.create("process", "edm")
    x0 = torch.zeros(8000, 3)
    pert = proc.perturb(x0, torch.full((8000,), 2.0), generator=_gen(4))
    assert stats.kstest(pert.x_t[:, 0].double().numpy(), stats.norm(0, 2.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("D", [8.0, 128.0, 2048.0])
def test_prior_is_the_pfgmpp_prior(D):
    """x = R u, R = smax sqrt(D) sqrt(Z/(1-Z)), Z ~ Beta(N/2, D/2): |x|^2 / (N smax^2) ~ F(N, D)."""
    proc = dk.create("process", "pfgmpp", D=D)
    x = proc.prior(5000, (1, 4, 4), generator=_gen(5), dtype=torch.float64)
    assert x.shape == (5000, 1, 4, 4) and x.dtype == torch.float64
    f = (x.flatten(1).pow(2).sum(1) / (16 * 80.0 ** 2)).numpy()
    assert stats.kstest(f, stats.f(16, D).cdf).pvalue > 1e-3
    logp = proc.prior_logp(x[:3])
    assert logp.shape == (3,) and bool(torch.isfinite(logp).all())


def test_edm_prior_is_gaussian():
    x = dk.create("process", "edm").prior(5000, (3,), generator=_gen(6))
    assert stats.kstest((x.double().pow(2).sum(1) / 80.0 ** 2).numpy(), stats.chi2(3).cdf).pvalue > 1e-3


@pytest.mark.parametrize("name", ["pfgmpp", "edm"])
def test_prior_and_perturb_are_batch_invariant(name):
    proc = dk.create("process", name)
    gens = lambda idx: [torch.Generator().manual_seed(100 + i) for i in idx]  # noqa: E731
    full = proc.prior(5, (7,), generator=gens(range(5)))
    assert torch.equal(full[3:4], proc.prior(1, (7,), generator=gens([3])))
    x0 = torch.randn(5, 7, generator=_gen(7))
    t = torch.linspace(0.1, 5, 5)
    full = proc.perturb(x0, t, generator=gens(range(5))).x_t
    assert torch.equal(full[2:3], proc.perturb(x0[2:3], t[2:3], generator=gens([2])).x_t)
