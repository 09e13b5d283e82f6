"""The velocity parameterization: exact conversions, the flow-matching loss, the exact mixture
velocity (docs/plugins/flow.md)."""

import pytest
import torch

import diffusekit as dk
from diffusekit.denoiser import Denoiser
from diffusekit.errors import ConfigError
from diffusekit.parameterization import Prediction
from diffusekit.testing import GaussianMixture
from diffusekit.testing.oracles import MixtureOracle
from diffusekit_flow import MixtureVelocity, velocity_of
from diffusekit_flow.velocity import velocity_prediction

PROCS = [("rectified-flow", {}), ("interpolant", {"path": "cosine"}), ("interpolant", {"path": "vp"}),
         ("vp", {}), ("ve", {})]


def _setup(name, params, n=16, t_lo=None, t_hi=None):
    p = dk.create("process", {"name": name, **params})
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, generator=g, dtype=torch.float64)
    lo = p.t_min if t_lo is None else t_lo
    hi = p.t_max if t_hi is None else t_hi
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    a, _, c = (v[:, None] for v in p.coefficients(t))
    da, _, dc = (v[:, None] for v in p.coefficient_derivatives(t))
    return p, x0, eps, t, a * x0 + c * eps, da * x0 + dc * eps


@pytest.mark.parametrize("name,params", PROCS)
def test_velocity_round_trips(name, params):
    """u -> (x0, eps) exactly, and every Gaussian kind -> u through the prediction."""
    p, x0, eps, t, x_t, u = _setup(name, params)
    pred = velocity_prediction(p, x_t, t, None, u)
    assert torch.allclose(pred.x0, x0, atol=1e-9) and torch.allclose(pred.eps, eps, atol=1e-9)
    ref = Prediction(p, x_t, t, x0=x0, eps=eps)
    for kind in ("x0", "eps", "score", "v"):
        assert torch.allclose(pred.get(kind), ref.get(kind), atol=1e-8), kind
        other = Prediction(p, x_t, t, **{kind: ref.get(kind)})
        assert torch.allclose(velocity_of(other), u, atol=1e-8), kind
    assert velocity_of(pred) is u


def test_linear_path_conversions_are_finite_at_both_ends():
    """x0 = x - t u and eps = x + (1 - t) u at t = 0 and t = 1 (det = 1)."""
    p, x0, eps, t, x_t, u = _setup("rectified-flow", {}, n=2, t_lo=0.0, t_hi=1.0)
    pred = velocity_prediction(p, x_t, t, None, u)
    assert torch.allclose(pred.x0, x_t - t[:, None] * u) and torch.allclose(pred.x0, x0)
    assert torch.allclose(pred.eps, x_t + (1 - t[:, None]) * u) and torch.allclose(pred.eps, eps)


def test_loss_is_the_flow_matching_mse():
    """With a network returning a fixed tensor the loss equals E|out - (eps - x0)|^2 computed by
    hand from the same draws (time first, then noise, as the loss draws them)."""
    p = dk.create("process", "rectified-flow")
    par = dk.create("parameterization", "velocity")
    out = torch.randn(8, 2, generator=torch.Generator().manual_seed(5))

    class Fixed(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return out

    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(6))
    loss = par.loss(Denoiser(Fixed(), par, p), x0, None, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    eps = torch.randn(x0.shape, generator=g)
    _ = p.sample_time(8, g)
    assert torch.allclose(loss, ((out - (eps - x0)) ** 2).mean())


def test_paired_coupling_needs_the_noise():
    p = dk.create("process", "rectified-flow")
    par = dk.create("parameterization", {"name": "velocity", "coupling": "paired"})
    net = dk.create("network", {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1})
    den = Denoiser(net, par, p)
    x0 = torch.randn(4, 2)
    with pytest.raises(ConfigError, match=r"coupling.*cond=\{'noise': z\}.*reflow_pairs"):
        par.loss(den, x0, None)
    z = torch.randn(4, 2)
    value = par.loss(den, x0, {"noise": z}, torch.Generator().manual_seed(0))
    assert value.ndim == 0 and torch.isfinite(value)
    with pytest.raises(dk.ShapeError, match="noise"):
        par.loss(den, x0, {"noise": z[:3]})


@pytest.mark.parametrize("name,params", [("rectified-flow", {}), ("interpolant", {"path": "cosine"}),
                                         ("interpolant", {"path": "vp"})])
def test_mixture_velocity_equals_velocity_of_the_exact_denoiser(name, params):
    """MixtureVelocity = a' E[x0|x] + c' (x - a E[x0|x]) / c with E[x0|x] from MixtureOracle."""
    p = dk.create("process", {"name": name, **params})
    gm = GaussianMixture.random(4, 3, seed=1, std=0.3)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 1.5
    t = torch.linspace(0.02, 0.98, 64, dtype=torch.float64)
    u = MixtureVelocity(gm, p)(x, t)
    x0 = MixtureOracle(gm, p)(x, t)
    ref = velocity_of(Prediction(p, x, t, x0=x0))
    assert torch.allclose(u, ref, atol=1e-8)


def test_mixture_velocity_is_finite_at_the_ends():
    p = dk.create("process", "rectified-flow")
    gm = GaussianMixture.ring()
    x = torch.randn(8, 2, dtype=torch.float64)
    u = MixtureVelocity(gm, p)(x, torch.tensor([0.0, 1.0] * 4, dtype=torch.float64))
    assert torch.isfinite(u).all()
    # at t = 1 (pure noise) E[eps - x0 | x] = x - E[x0] = x - mean of the mixture
    assert torch.allclose(u[1::2], x[1::2] - gm.means.mean(0), atol=1e-9)


def test_velocity_refuses_non_gaussian_processes():
    with pytest.raises(dk.CompatibilityError, match="parameterizations that fit"):
        dk.Pipeline(process={"name": "masked", "vocab_size": 5}, network=torch.nn.Identity(),
                    parameterization="velocity")
