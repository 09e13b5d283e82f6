"""Closed-form checks of the score-SDE processes (docs/plugins/sde.md)."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.testing import check_process
from diffusekit_sde.discretization import step_coefficients, time_grid

PROCS = ["vp", "subvp", "ve", "ddpm", "smld"]


def _t(n=41, lo=0.02, hi=0.98):
    return torch.linspace(lo, hi, n, dtype=torch.float64)


@pytest.mark.parametrize("name", PROCS)
def test_moment_odes(name):
    """m' = k(t) m and v' = 2 k(t) v + g^2 with f = k x: the closed-form marginal solves the
    moment ODEs of the SDE (VP: v = 1 - m^2, sub-VP: (1 - m^2)^2, VE: sigma^2 - sigma_min^2 + const)."""
    p = dk.create("process", name)
    t = _t()
    h = 1e-5
    a, _, c = p.coefficients(t)
    ap, _, cp = p.coefficients(t + h)
    am, _, cm = p.coefficients(t - h)
    dm = (ap - am) / (2 * h)
    dv = (cp ** 2 - cm ** 2) / (2 * h)
    k = p.drift(torch.ones(len(t), 1, dtype=torch.float64), t)[:, 0]
    g2 = p.diffusion(t) ** 2
    torch.testing.assert_close(dm, k * a, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dv, 2 * k * c ** 2 + g2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["vp", "subvp", "ddpm"])
def test_vp_family_mean_ode_matches_beta(name):
    p = dk.create("process", name)
    t = _t()
    a = p.coefficients(t)[0]
    h = 1e-5
    dlog = (torch.log(p.coefficients(t + h)[0]) - torch.log(p.coefficients(t - h)[0])) / (2 * h)
    torch.testing.assert_close(dlog, -0.5 * p.beta(t), rtol=1e-5, atol=1e-7)
    assert torch.all(a < 1) and torch.all(a > 0)


def test_subvp_std_is_one_minus_m_squared():
    """sub-VP std = 1 - m^2 (not its square root): the variance is (1 - m^2)^2."""
    p = dk.create("process", "subvp")
    t = _t()
    m = torch.exp(-0.25 * t ** 2 * (20 - 0.1) - 0.5 * t * 0.1)
    a, _, c = p.coefficients(t)
    torch.testing.assert_close(a, m)
    torch.testing.assert_close(c, 1 - m ** 2)
    assert not torch.allclose(c, torch.sqrt(1 - m ** 2))


def test_vp_and_ve_closed_forms():
    vp, ve = dk.create("process", "vp"), dk.create("process", "ve", sigma_min=0.01, sigma_max=50.0)
    t = _t()
    lm = -0.25 * t ** 2 * 19.9 - 0.05 * t
    a, _, c = vp.coefficients(t)
    torch.testing.assert_close(a, torch.exp(lm))
    torch.testing.assert_close(c, torch.sqrt(1 - torch.exp(2 * lm)))
    a, _, c = ve.coefficients(t)
    torch.testing.assert_close(c, 0.01 * 5000.0 ** t)
    torch.testing.assert_close(ve.diffusion(t), c * math.sqrt(2 * math.log(5000.0)))
    assert ve.prior_std() == 50.0


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_check_process_simulation(name):
    """Euler-Maruyama simulation of the forward SDE agrees with the closed-form marginal."""
    kw = {"sigma_max": 5.0} if name == "ve" else {}
    errs = check_process(dk.create("process", name, **kw), dim=2, n=4000, t_end=0.6, steps=200)
    assert errs["mean_err"] >= 0


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_log_snr_inverse(name):
    p = dk.create("process", name)
    t = _t()
    torch.testing.assert_close(p.t_from_log_snr(p.log_snr(t)), t, rtol=1e-6, atol=1e-8)


def test_ddpm_tables_are_the_papers_discretisation():
    """On its grid t_i = i/(N-1) the exact transition of `ddpm` is x_i = sqrt(1 - beta_i) x_{i-1}
    + sqrt(beta_i) z with beta_i = linspace(b_min/N, b_max/N, N); `smld` gives
    sqrt(sigma_i^2 - sigma_{i-1}^2) with geometric sigma_i."""
    n = 200
    p = dk.create("process", "ddpm", num_scales=n)
    c = step_coefficients(p, time_grid(p, n - 1))
    betas = torch.linspace(0.1 / n, 20.0 / n, n, dtype=torch.float64).flip(0)[:-1]
    torch.testing.assert_close(1 - c["r"] ** 2, betas, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c["G2"], betas, rtol=1e-10, atol=1e-12)
    a0, _, c0 = p.coefficients(torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(c0 ** 2, betas[-1:].new_tensor([0.1 / n]), rtol=1e-9, atol=0)
    s = dk.create("process", "smld", num_scales=n)
    c = step_coefficients(s, time_grid(s, n - 1))
    sig = torch.exp(torch.linspace(math.log(0.01), math.log(50.0), n, dtype=torch.float64)).flip(0)
    torch.testing.assert_close(c["G2"], sig[:-1] ** 2 - sig[1:] ** 2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(c["r"], torch.ones(n - 1, dtype=torch.float64))


def test_discrete_training_times_on_grid():
    p = dk.create("process", "ddpm", num_scales=10)
    t = p.sample_time(1000, torch.Generator().manual_seed(0)).double()
    idx = t * 9
    torch.testing.assert_close(idx, idx.round(), atol=1e-5, rtol=0)
    assert set(idx.round().long().tolist()) == set(range(10))


def test_vp_transition_is_ddpm_step():
    """Exact transition on any grid: r = sqrt(1 - beta), G^2 = beta, with beta < 1 even for 5 steps."""
    p = dk.create("process", "vp")
    c = step_coefficients(p, time_grid(p, 5))
    torch.testing.assert_close(c["G2"], 1 - c["r"] ** 2)
    assert torch.all(c["G2"] < 1)
    e = step_coefficients(p, time_grid(p, 1000), "euler")
    t = step_coefficients(p, time_grid(p, 1000), "transition")
    torch.testing.assert_close(e["G2"], t["G2"], rtol=0.1, atol=1e-6)  # first-order agreement


def test_config_errors_name_field_and_value():
    with pytest.raises(ConfigError, match="beta_max"):
        dk.create("process", "vp", beta_min=5.0, beta_max=1.0)
    with pytest.raises(ConfigError, match="sigma_min"):
        dk.create("process", "ve", sigma_min=-1.0)
    with pytest.raises(ConfigError, match="num_scales"):
        dk.create("process", "ddpm", num_scales=1)
