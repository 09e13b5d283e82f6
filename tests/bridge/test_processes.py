"""The (a, b, c) bridge family: closed forms, boundaries, the underlying diffusion, config errors."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.process import AdditiveGaussian, EndpointConditioned, PinnedBridge
from diffusekit_bridge.processes import BridgeProcess

SCHEDULES = ["gmax", "vp", "ve", "sb"]
T = torch.linspace(0, 1, 101, dtype=torch.float64)


def _proc(schedule, **kw):
    return dk.create("process", "bridge", schedule=schedule, **kw)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_capabilities_and_boundaries(schedule):
    p = _proc(schedule)
    assert isinstance(p, (PinnedBridge, EndpointConditioned, AdditiveGaussian, BridgeProcess))
    assert isinstance(p, PinnedBridge) and p.pinned_time == 1.0
    a, b, c = p.coefficients(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert a.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert b.tolist() == pytest.approx([0.0, 1.0], abs=1e-12)
    assert c.tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    a, b, c = p.coefficients(T[1:-1])
    assert (c > 0).all() and (a > 0).all() and (b > 0).all()
    if schedule != "vp":  # alpha constant: a + b = 1
        torch.testing.assert_close(a + b, torch.ones_like(a), rtol=0, atol=1e-12)
    else:  # a + b = 1 fails for the VP bridge (alpha_t varies), as DDBM's VP bridge implies
        assert ((a + b) - 1).abs().max() > 1e-2


def test_gmax_closed_form():
    """Bridge-TTS g_max: sigma_t^2 = (bmax - bmin) t^2 / 2 + bmin t, a = sbar^2 / sigma_1^2,
    b = sigma^2 / sigma_1^2, c = sbar sigma / sigma_1."""
    p = _proc("gmax")
    bmin, bmax = 0.01, 50.0
    s2 = 0.5 * (bmax - bmin) * T ** 2 + bmin * T
    s12 = 0.5 * (bmax + bmin)
    sb2 = s12 - s2
    a, b, c = p.coefficients(T)
    torch.testing.assert_close(a, sb2 / s12, rtol=0, atol=1e-12)
    torch.testing.assert_close(b, s2 / s12, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, torch.sqrt((s2 * sb2).clamp_min(0)) / math.sqrt(s12), rtol=0, atol=1e-12)


def test_ddbm_ve_closed_form():
    """DDBM VE with T = sigma_max: x_t = (t/T)^2 x_T + (1 - (t/T)^2) x0 + t sqrt(1 - (t/T)^2) eps
    in DDBM time t = T u, u in [0, 1]."""
    p = _proc("ve", sigma_max=80.0)
    u = T
    a, b, c = p.coefficients(u)
    torch.testing.assert_close(b, u ** 2, rtol=0, atol=1e-12)
    torch.testing.assert_close(a, 1 - u ** 2, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, 80 * u * torch.sqrt(1 - u ** 2), rtol=0, atol=1e-9)


def test_ddbm_vp_closed_form():
    """DDBM VP (Table 1): with the VP marginal alpha_t, sigma_t and SNR_t = alpha_t^2 / sigma_t^2,
    a = alpha_t (1 - SNR_T / SNR_t), b = (SNR_T / SNR_t) alpha_t / alpha_T,
    c^2 = sigma_t^2 (1 - SNR_T / SNR_t)."""
    p = _proc("vp")
    t = T[1:]
    log_al = -0.5 * 0.1 * t - 0.25 * 2.0 * t ** 2
    al, sig2 = torch.exp(log_al), -torch.expm1(2 * log_al)
    snr, snr_T = al ** 2 / sig2, (al ** 2 / sig2)[-1]
    a, b, c = p.coefficients(t)
    torch.testing.assert_close(a, al * (1 - snr_T / snr), rtol=0, atol=1e-12)
    torch.testing.assert_close(b, snr_T / snr * al / al[-1], rtol=0, atol=1e-12)
    torch.testing.assert_close(c ** 2, sig2 * (1 - snr_T / snr), rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_coefficients_are_the_conditioned_diffusion(schedule):
    """Independent of the schedule code: build the diffusion dx = f x dt + g dw from the papers'
    f and g, get alpha_t = exp(int f) and rho_t^2 = int g^2 / alpha^2 by quadrature, and condition
    the Gaussian pair (x_t, x_1) given x0 on x_1: mean and variance must be a x0 + b x1 and c^2."""
    p = _proc(schedule)
    fine = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    if schedule == "gmax":
        f, g2 = torch.zeros_like(fine), 0.01 + fine * (50 - 0.01)
    elif schedule == "ve":
        f, g2 = torch.zeros_like(fine), 2 * 80.0 ** 2 * fine  # d(rho^2)/dt for rho = 80 t
    elif schedule == "vp":
        beta = 0.1 + 2.0 * fine
        f, g2 = -0.5 * beta, beta
    else:
        f, g2 = torch.zeros_like(fine), 0.4 * 2.6 ** (2 * fine)
    dt = fine[1] - fine[0]
    log_al = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((f[1:] + f[:-1]) / 2 * dt, 0)])
    al = torch.exp(log_al)
    w = g2 / al ** 2
    rho2 = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((w[1:] + w[:-1]) / 2 * dt, 0)])
    idx = torch.arange(0, 200_001, 10_000)
    at, r2t, a1, r21 = al[idx], rho2[idx], al[-1], rho2[-1]
    # x_t = al_t (x0 + W(rho_t^2)): Cov(x_t, x_1) = al_t al_1 rho_t^2, Var x_1 = al_1^2 rho_1^2
    k = at * a1 * r2t / (a1 ** 2 * r21)
    a_ref, b_ref = at - k * a1, k
    var_ref = at ** 2 * r2t - k * at * a1 * r2t
    a, b, c = p.coefficients(fine[idx])
    torch.testing.assert_close(a, a_ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(b, b_ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(c ** 2, var_ref.clamp_min(0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_normalized_coefficients_are_finite_at_both_ends(schedule):
    p = _proc(schedule)
    ar, cr, r = p.normalized_coefficients(T)
    assert torch.isfinite(ar).all() and torch.isfinite(cr).all()
    assert (ar[0].item(), cr[0].item()) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert (ar[-1].item(), cr[-1].item()) == pytest.approx((0.0, 1.0), abs=1e-12)
    a, _, c = p.coefficients(T[1:-1])
    torch.testing.assert_close(ar[1:-1], a / torch.sqrt(a * a + c * c), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(cr[1:-1], c / torch.sqrt(a * a + c * c), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ar ** 2 + cr ** 2, torch.ones_like(ar), rtol=0, atol=1e-12)


def test_prior_is_the_endpoint_and_frames_are_replicated():
    p = _proc("gmax")
    first = torch.randn(3, 1, 4, 4)
    x = p.prior(3, (5, 1, 4, 4), cond=first)
    assert x.shape == (3, 5, 1, 4, 4)
    assert all(torch.equal(x[:, k], first) for k in range(5))
    x1 = torch.randn(3, 5, 1, 4, 4)
    assert torch.equal(p.prior(3, (5, 1, 4, 4), cond={"image": first, "x1": x1}), x1)
    pert = p.perturb(torch.zeros(3, 5, 1, 4, 4), torch.ones(3), first)
    torch.testing.assert_close(pert.x_t, first.unsqueeze(1).expand(3, 5, 1, 4, 4))  # pinned at t = 1


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(dk.ConfigError, match="sigma_max is a parameter of the schedule"):
        _proc("gmax", sigma_max=3.0)
    with pytest.raises(dk.ConfigError, match="beta_max"):
        _proc("gmax", beta_min=5.0, beta_max=1.0)
    p = _proc("gmax")
    with pytest.raises(dk.ConfigError, match="starts at the condition x1"):
        p.prior(2, (3,), cond=None)
    with pytest.raises(dk.ShapeError, match="fits neither"):
        p.endpoint(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(dk.ConfigError, match="x1"):
        p.endpoint({"image": torch.zeros(2, 3)}, torch.zeros(2, 3))


def test_sb_speech_process_is_an_instance_of_the_family():
    """One implementation: the speech plugin's ``sb`` is the family with the ``sb`` schedule."""
    sb = dk.create("process", "sb")
    fam = _proc("sb")
    assert isinstance(sb, BridgeProcess)
    for x, y in zip(sb.coefficients(T), fam.coefficients(T)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    s, u = T[60:-1], T[59:-2]
    for x, y in zip(sb.posterior_coefficients(s, u), fam.posterior_coefficients(s, u)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
