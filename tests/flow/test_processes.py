"""Flow processes: closed-form coefficients, perturbation moments, the matching SDE, the working
range and the training-time densities (docs/plugins/flow.md)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.process import SDE, AdditiveGaussian, Likelihood
from diffusekit.testing import check_process
from diffusekit_flow.processes import Interpolant

PATHS = [("rectified-flow", {}), ("interpolant", {"path": "cosine"}), ("interpolant", {"path": "vp"}),
         ("interpolant", {"path": "linear"})]


def _proc(name, params):
    return dk.create("process", {"name": name, **params})


def test_rectified_flow_is_the_linear_path():
    p = dk.create("process", "rectified-flow")
    assert isinstance(p, Interpolant) and isinstance(p, AdditiveGaussian) and isinstance(p, SDE)
    assert isinstance(p, Likelihood)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    a, b, c = p.coefficients(t)
    assert torch.equal(a, 1 - t) and torch.equal(c, t) and torch.equal(b, torch.zeros_like(t))
    da, db, dc = p.coefficient_derivatives(t)
    assert torch.equal(da, -torch.ones_like(t)) and torch.equal(dc, torch.ones_like(t))
    assert p.default_parameterization == "velocity"
    assert p.preferred_samplers[0] == "flow-midpoint"
    assert (p.t_min, p.t_max) == (1e-3, 1 - 1e-3)


@pytest.mark.parametrize("name,params", PATHS)
def test_derivatives_and_log_snr_inverse(name, params):
    p = _proc(name, params)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    da, _, dc = p.coefficient_derivatives(t)
    h = 1e-6
    a1, _, c1 = p.coefficients(t + h)
    a0, _, c0 = p.coefficients(t - h)
    assert torch.allclose(da, (a1 - a0) / (2 * h), atol=1e-6)
    assert torch.allclose(dc, (c1 - c0) / (2 * h), atol=1e-6)
    lam = p.log_snr(t)
    a, _, c = p.coefficients(t)
    assert torch.allclose(lam, 2 * torch.log(a / c), atol=1e-10)
    assert torch.allclose(p.t_from_log_snr(lam), t, atol=1e-9)


@pytest.mark.parametrize("name,params", PATHS)
def test_perturbation_mean_and_variance(name, params):
    """x_t | x0 ~ N(a(t) x0, c(t)^2 I): sample moments within 5 standard errors."""
    p = _proc(name, params)
    n, x0 = 40_000, torch.tensor([1.5, -0.5], dtype=torch.float64)
    for tv in (0.1, 0.5, 0.9):
        t = torch.full((n,), tv, dtype=torch.float64)
        pert = p.perturb(x0.expand(n, 2).clone(), t, generator=torch.Generator().manual_seed(int(tv * 10)))
        a, _, c = (float(v) for v in p.coefficients(torch.tensor([tv], dtype=torch.float64)))
        mean, std = pert.x_t.mean(0), pert.x_t.std(0)
        assert torch.allclose(mean, a * x0, atol=5 * c / math.sqrt(n)), (tv, mean, a * x0)
        assert torch.allclose(std, torch.full_like(std, c), atol=5 * c / math.sqrt(2 * n)), (tv, std, c)
        assert torch.allclose(pert.x_t, a * x0 + c * pert.noise)


@pytest.mark.parametrize("name,params", PATHS)
def test_matching_sde_has_the_path_marginals(name, params):
    """Euler-Maruyama on dx = (a'/a) x dt + g dw from a point mass reproduces N(a x0, c^2)."""
    p = _proc(name, params)
    check_process(p, n=8000, t_end=0.8, steps=400)


def test_linear_sde_closed_form():
    p = dk.create("process", "rectified-flow")
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    x = torch.ones(3, 2, dtype=torch.float64)
    assert torch.allclose(p.drift(x, t), -x / (1 - t)[:, None])
    assert torch.allclose(p.diffusion(t) ** 2, 2 * t / (1 - t))


def test_vp_path_equals_the_score_sde_vp():
    p, vp = dk.create("process", {"name": "interpolant", "path": "vp"}), dk.create("process", "vp")
    t = torch.linspace(0.001, 1, 20, dtype=torch.float64)
    for u, v in zip(p.coefficients(t), vp.coefficients(t)):
        assert torch.allclose(u, v)
    assert torch.allclose(p.diffusion(t), vp.diffusion(t))
    assert p.t_max == 1.0  # a(1) > 0 on the VP path


def test_working_range_errors_name_the_field_and_fix():
    with pytest.raises(ConfigError, match=r"t_max.*a\(1\) = 0.*t_max < 1"):
        dk.create("process", {"name": "rectified-flow", "t_max": 1.0})
    with pytest.raises(ConfigError, match="t_min"):
        dk.create("process", {"name": "rectified-flow", "t_min": 0.0})
    with pytest.raises(ConfigError, match="time_sampling"):
        dk.create("process", {"name": "rectified-flow", "time_sampling": "lognormal"})
    with pytest.raises(ConfigError, match="path"):
        dk.create("process", {"name": "interpolant", "path": "sigmoid"})


def test_logit_normal_time_sampler_matches_its_cdf():
    p = dk.create("process", {"name": "rectified-flow", "time_sampling": "logit-normal", "loc": 0.3, "scale": 0.8})
    t = p.sample_time(20_000, torch.Generator().manual_seed(0)).double()
    assert float(t.min()) >= p.t_min and float(t.max()) <= p.t_max
    s = ((t - p.t_min) / (p.t_max - p.t_min)).numpy()
    res = stats.kstest(s, lambda v: stats.norm.cdf((np.log(v) - np.log1p(-v) - 0.3) / 0.8))
    assert res.pvalue > 1e-3, res


@pytest.mark.parametrize("sampling,params", [("mode", {"mode_scale": 1.29}), ("mode", {"mode_scale": -0.5}),
                                              ("logit-normal", {}), ("uniform", {})])
def test_time_density_normalised_and_matches_histogram(sampling, params):
    p = dk.create("process", {"name": "rectified-flow", "time_sampling": sampling, **params})
    edges = torch.linspace(p.t_min, p.t_max, 21, dtype=torch.float64)
    fine = torch.linspace(p.t_min, p.t_max, 20_001, dtype=torch.float64)[1:-1]
    dens = p.time_density(fine)
    assert abs(float(torch.trapezoid(dens, fine)) - 1) < 1e-2
    n = 40_000
    t = p.sample_time(n, torch.Generator().manual_seed(1)).double()
    hist = torch.histogram(t, edges).hist / n
    mass = torch.stack([torch.trapezoid(dens[(fine >= lo) & (fine < hi)], fine[(fine >= lo) & (fine < hi)])
                        for lo, hi in zip(edges[:-1], edges[1:])])
    assert float((hist - mass).abs().max()) < 0.01, (hist, mass)


def test_mode_sampler_is_esser_eq20():
    """t = 1 - u - s (cos^2(pi u / 2) - 1 + u): with s = 0 it is uniform."""
    p = dk.create("process", {"name": "rectified-flow", "time_sampling": "mode", "mode_scale": 0.0})
    q = dk.create("process", {"name": "rectified-flow"})
    tp = p.sample_time(1000, torch.Generator().manual_seed(2))
    tq = q.sample_time(1000, torch.Generator().manual_seed(2))
    assert torch.allclose(tp, p.t_min + p.t_max - tq, atol=1e-6)  # 1 - u instead of u


def test_conformance_velocity_network_is_exact_for_standard_normal_data():
    p = dk.create("process", "rectified-flow")
    par = dk.create("parameterization", "velocity")
    net = p.conformance_network(par)
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.full((5,), 0.3, dtype=torch.float64)
    x = 0.7 * x0 + 0.3 * eps
    # E[eps - x0 | x] for x0, eps iid N(0, I): (c - a) x / (a^2 + c^2)
    assert torch.allclose(net(x, t), (0.3 - 0.7) * x / (0.49 + 0.09))
