"""EDM preconditioning: scalings, the exact network call, predictions and the loss."""

import math

import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit.errors import CompatibilityError
from diffusekit_pfgmpp.oracle import DiscreteOracle, discrete_denoiser


class Recorder(nn.Module):
    """Returns a fixed function of its inputs and records what it was called with."""

    def __init__(self, dim=3):
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.calls = []

    def forward(self, x, t, cond=None):
        self.calls.append((x.detach().clone(), t.detach().clone(), cond))
        return self.lin(x) + t[:, None]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_scalings_match_edm_table_1():
    par = dk.create("parameterization", "edm")
    s = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    sd = 0.5
    c_skip, c_out, c_in, c_noise = par.scalings(s)
    assert torch.allclose(c_skip, sd ** 2 / (s ** 2 + sd ** 2))
    assert torch.allclose(c_out, s * sd / (s ** 2 + sd ** 2).sqrt())
    assert torch.allclose(c_in, 1 / (s ** 2 + sd ** 2).sqrt())
    assert torch.allclose(c_noise, s.log() / 4)
    # unit effective weight: lambda(sigma) c_out(sigma)^2 = 1 (EDM Sec. 5)
    assert torch.allclose(par.loss_weight(s) * c_out ** 2, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("proc", ["pfgmpp", "edm"])
def test_network_receives_scaled_input_and_c_noise(proc):
    process = dk.create("process", proc)
    net = Recorder()
    par = dk.create("parameterization", "edm", sigma_data=0.7)
    x = torch.randn(4, 3, generator=_gen(1))
    t = torch.tensor([0.01, 0.3, 2.0, 50.0])
    pred = par.predict(net, process, x, t, cond="c", net_cond="enc")
    x_in, t_in, cond = net.calls[-1]
    s2 = t ** 2 + 0.49
    assert torch.allclose(x_in, x / s2.sqrt()[:, None])
    assert torch.allclose(t_in, t.log() / 4)
    assert cond == "enc"
    f = net.lin(x_in) + t_in[:, None]
    expect = (0.49 / s2)[:, None] * x + (t * 0.7 / s2.sqrt())[:, None] * f
    assert torch.allclose(pred.x0, expect, atol=1e-6)
    assert torch.allclose(pred.eps, (x - expect) / t[:, None], atol=1e-5)


def test_precondition_false_passes_sigma_and_returns_x0():
    process = dk.create("process", "pfgmpp", D=16)
    net = Recorder()
    par = dk.create("parameterization", "edm", precondition=False)
    x, t = torch.randn(2, 3), torch.tensor([0.5, 4.0])
    pred = par.predict(net, process, x, t)
    assert torch.equal(net.calls[-1][1], t) and torch.equal(net.calls[-1][0], x)
    assert torch.allclose(pred.x0, net.lin(x) + t[:, None])


def test_gaussian_conversions_only_for_edm():
    """eps is exact for both (posterior mean of n / sigma); the Gaussian score only for edm."""
    x, t = torch.randn(5, 3, generator=_gen(2)), torch.full((5,), 2.0)
    par = dk.create("parameterization", "edm", precondition=False)
    net = lambda x, s, c=None: 0.25 * x  # noqa: E731
    pred = par.predict(net, dk.create("process", "edm"), x, t)
    assert torch.allclose(pred.score, -(x - 0.25 * x) / 4.0)
    pred = par.predict(net, dk.create("process", "pfgmpp"), x, t)
    assert torch.allclose(pred.eps, 0.75 * x / 2.0)
    with pytest.raises(TypeError):
        pred.score


def test_requires_a_sigma_process():
    with pytest.raises(CompatibilityError, match="SigmaParameterized"):
        dk.Pipeline(process="vp", network=Recorder(), parameterization="edm", sampler="ode", sample_shape=(3,))


def test_zero_network_is_bayes_optimal_for_gaussian_data_and_loss_is_one():
    """For y ~ N(0, sd^2 I) under the Gaussian kernel, E[y | x] = c_skip x, so F = 0 is optimal and
    E lambda |D - y|^2 = lambda sd^2 sigma^2 / (sigma^2 + sd^2) = 1 per dimension, at every sigma."""
    zero = lambda x, t, c=None: torch.zeros_like(x)  # noqa: E731
    process = dk.create("process", "edm")
    par = dk.create("parameterization", "edm")
    den = dk.denoiser.Denoiser(zero, par, process)
    y = 0.5 * torch.randn(40000, 4, generator=_gen(3), dtype=torch.float64)
    loss = float(par.loss(den, y, generator=_gen(4)))
    assert abs(loss - 1.0) < 0.03
    # with a mismatched sigma_data, c_skip x is no longer E[y | x] and the loss is far above 1
    bad = dk.create("parameterization", "edm", sigma_data=0.05)
    assert float(bad.loss(dk.denoiser.Denoiser(zero, bad, process), y, generator=_gen(4))) > 2.0


def test_pfgmpp_loss_is_minimised_by_the_exact_denoiser():
    """The loss uses the heavy-tailed kernel: the D-matched oracle beats the Gaussian one."""
    torch.manual_seed(0)
    pts = torch.tensor([[1.0, 0.0], [-1.0, 0.5], [0.0, -1.0]])
    D = 3.0
    process = dk.create("process", "pfgmpp", D=D, p_mean=0.0, p_std=0.3)
    par = dk.create("parameterization", "edm", precondition=False)
    y = pts[torch.randint(0, 3, (60000,), generator=_gen(5))].double()
    right = dk.denoiser.Denoiser(DiscreteOracle(pts, D=D), par, process)
    wrong = dk.denoiser.Denoiser(DiscreteOracle(pts, D=math.inf), par, process)
    l_right = float(par.loss(right, y, generator=_gen(6)))
    l_wrong = float(par.loss(wrong, y, generator=_gen(6)))
    assert l_right < 0.97 * l_wrong


def test_loss_backpropagates_through_the_network():
    net = dk.create("network", "mlp", dim=3, hidden=32, depth=1, time_scale=1.0)
    process = dk.create("process", "pfgmpp", D=32)
    par = dk.create("parameterization", "edm")
    loss = par.loss(dk.denoiser.Denoiser(net, par, process), torch.randn(64, 3), generator=_gen(7))
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in net.parameters())


def test_oracle_D_large_matches_gaussian_denoiser():
    pts = torch.randn(6, 3, generator=_gen(8), dtype=torch.float64)
    w = torch.rand(6, generator=_gen(9), dtype=torch.float64) + 0.2
    x = torch.randn(200, 3, generator=_gen(10), dtype=torch.float64) * 2
    s = torch.exp(torch.linspace(-3, 3, 200, dtype=torch.float64))
    gauss = discrete_denoiser(x, s, pts, w / w.sum(), math.inf)
    big = discrete_denoiser(x, s, pts, w / w.sum(), 1e6)
    assert float((gauss - big).abs().max()) < 1e-3
    # explicit Gaussian posterior mean as an independent reference
    logw = torch.log(w)[None] - ((x[:, None] - pts[None]) ** 2).sum(-1) / (2 * s[:, None] ** 2)
    ref = torch.softmax(logw, 1) @ pts
    assert torch.allclose(gauss, ref, atol=1e-12)
    # D = 4 is visibly different (heavier tails put mass on far points)
    assert float((discrete_denoiser(x, s, pts, w / w.sum(), 4.0) - gauss).abs().max()) > 0.05
