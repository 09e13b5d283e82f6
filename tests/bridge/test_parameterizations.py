"""eps_psi / v_psi / SAF: exact round trips, the pinned-end limit, zero loss with the exact target,
and SAF turning the exact VP diffusion denoiser into the exact bridge denoiser."""

import pytest
import torch

import diffusekit as dk
from diffusekit.parameterization import Prediction
from diffusekit.process import bcast
from diffusekit_bridge.parameterizations import EpsPsi, v_target, v_to_x0

SCHEDULES = ["gmax", "vp", "ve", "sb"]


def _draw(p, t, seed=0, shape=(6, 3)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(t.shape[0], *shape[1:], generator=g, dtype=torch.float64)
    x1 = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    a, b, c = (bcast(v, x0) for v in p.coefficients(t))
    return x0, x1, eps, a * x0 + b * x1 + c * eps


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_eps_psi_round_trip(schedule):
    p = dk.create("process", "bridge", schedule=schedule)
    t = torch.tensor([1e-4, 0.1, 0.3, 0.5, 0.9, 1.0], dtype=torch.float64)
    x0, x1, eps, xt = _draw(p, t)
    e = EpsPsi.target(p, xt, t, x0)
    torch.testing.assert_close(EpsPsi.to_x0(p, xt, t, e), x0, rtol=0, atol=1e-10)
    assert torch.isfinite(e).all()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_v_psi_round_trip_and_pinned_limit(schedule):
    p = dk.create("process", "bridge", schedule=schedule)
    t = torch.tensor([1e-3, 0.1, 0.3, 0.5, 0.9, 0.999], dtype=torch.float64)
    x0, x1, eps, xt = _draw(p, t)
    v = v_target(p, t, x0, eps)
    torch.testing.assert_close(v_to_x0(p, xt, t, x1, v), x0, rtol=0, atol=1e-8)
    # the same v as the generic v-prediction (a eps - c x0) / sqrt(a^2 + c^2) where c > 0
    generic = Prediction(p, xt, t, x1, x0=x0).v
    torch.testing.assert_close(generic, v, rtol=0, atol=1e-8)
    # at the pinned end (a = c = 0, x_t = x1) x0 = -v, finite
    one = torch.ones(3, dtype=torch.float64)
    x1b = torch.randn(3, 3, dtype=torch.float64)
    vb = torch.randn(3, 3, dtype=torch.float64)
    torch.testing.assert_close(v_to_x0(p, x1b.clone(), one, x1b, vb), -vb, rtol=0, atol=1e-12)


@pytest.mark.parametrize("param", ["x0", "eps-psi", "v-psi", "saf"])
def test_loss_is_zero_for_the_exact_target_of_point_mass_data(param):
    """Data x0 = X (one point): E[x0 | x_t] = X exactly, so the exact target is a function of
    x_t and the loss must vanish; a wrong target convention would not."""
    p = dk.create("process", "bridge", schedule="gmax")
    X = torch.tensor([[0.3, -0.7, 1.1]], dtype=torch.float64)
    spec = dk.create("parameterization", param)

    class Exact(torch.nn.Module):
        def forward(self, x, t, cond=None):
            x0 = X.expand_as(x)
            if param == "x0":
                return x0
            if param == "eps-psi":
                return EpsPsi.target(p, x, t, x0)
            if param == "saf":  # the network sees (x~, t_d): x~ = m x0 + q eps in the VP's own terms
                ar, _, cr = spec.diffusion.coefficients(t)
                xr = x
            else:
                ar, cr, _ = p.normalized_coefficients(t)
                xr = p.reduced(x, t, cond)
            ar, cr = bcast(ar, x), bcast(cr, x)
            eps = (xr - ar * x0) / cr
            return ar * eps - cr * x0

    pipe = dk.Pipeline(process=p, network=Exact(), parameterization=spec, sampler="bridge-sde", sample_shape=(3,))
    x1 = torch.randn(64, 3, dtype=torch.float64)
    loss = pipe.loss(X.expand(64, 3).clone(), x1, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-10  # a wrong convention gives O(1)


class VPGaussianVOracle(torch.nn.Module):
    """Exact v of a VP diffusion for x0 ~ N(mu, s^2 I): x~ = m x0 + q eps, m^2 + q^2 = 1."""

    def __init__(self, vp, mu, s):
        super().__init__()
        self.vp, self.mu, self.s = vp, mu, s

    def forward(self, x, t, cond=None):
        m, _, q = (bcast(v.to(x.dtype), x) for v in self.vp.coefficients(t))
        x0 = self.mu + m * self.s ** 2 * (x - m * self.mu) / (m * m * self.s ** 2 + q * q)
        eps = (x - m * x0) / q
        return m * eps - q * x0


@pytest.mark.parametrize("schedule", ["gmax", "ve", "sb"])
def test_saf_turns_the_exact_diffusion_denoiser_into_the_exact_bridge_denoiser(schedule):
    """SAF feeds x~ = (x_t - b x1) / r at the VP time with the same SNR: with the exact VP
    denoiser of Gaussian data the SAF bridge denoiser is the exact E[x0 | x_t, x1]."""
    p = dk.create("process", "bridge", schedule=schedule)
    saf = dk.create("parameterization", {"name": "saf", "diffusion": {"name": "vp"}})
    mu, s = 0.4, 0.7
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64)
    x0, x1, eps, xt = _draw(p, t, shape=(25, 4))
    x0 = mu + s * x0
    a, b, c = (bcast(v, x0) for v in p.coefficients(t))
    xt = a * x0 + b * x1 + c * eps
    pred = saf.predict(VPGaussianVOracle(saf.diffusion, mu, s), p, xt, t, x1, x1)
    exact = mu + a * s ** 2 * (xt - a * mu - b * x1) / (a * a * s ** 2 + c * c)
    # where the aligned VP time is inside the VP range the match is exact (else it is clamped)
    lam_b = 2 * torch.log(p.coefficients(t)[0] / p.coefficients(t)[2])
    td = saf.aligned_time(p, t)
    inside = (td > saf.diffusion.train_t_min + 1e-9) & (td < 1 - 1e-9)
    assert inside.sum() >= 15
    torch.testing.assert_close(saf.diffusion.log_snr(td[inside]), lam_b[inside], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pred.x0[inside], exact[inside], rtol=1e-6, atol=1e-6)


def test_refusals_name_what_fits():
    with pytest.raises(dk.CompatibilityError, match="not variance preserving"):
        dk.create("parameterization", {"name": "saf", "diffusion": {"name": "ve"}})
    with pytest.raises(dk.CompatibilityError, match="parameterizations that fit"):
        dk.Pipeline(process="vp", network=torch.nn.Identity(), parameterization="eps-psi", sampler="sde-ancestral")
