"""Complex Gaussian toy (docs/plugins/sgmse.md): with the exact denoiser, samplers started
from the true p_1 return the clean distribution CN(mu, s^2); SB steps are exact posteriors."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ShapeError
from diffusekit_sgmse.processes import OUVE, SchroedingerBridge

from .oracles import ComplexGaussianOracle

N = 4000
S = 0.3
MU = torch.tensor([[0.5 - 0.2j, -0.3 + 0.4j], [0.1 + 0.0j, -0.6 - 0.5j]], dtype=torch.complex128)
Y = torch.tensor([[0.2 + 0.3j, 0.4 - 0.1j], [-0.2 + 0.2j, 0.0 + 0.6j]], dtype=torch.complex128)


def _pipe(process, param, sampler):
    out = {"sgmse-score": "eps", "sgmse-x0": "x0", "predictive": "x0"}[param]
    oracle = ComplexGaussianOracle(process, MU, S, out)
    spec = dk.create("parameterization", param, skip=False) if param != "sgmse-score" else param
    return dk.Pipeline(process=process, network=oracle, parameterization=spec, sampler=sampler)


def _true_p1(process, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b, c = (float(v) for v in process.coefficients(torch.tensor(1.0, dtype=torch.float64)))
    z = torch.complex(torch.randn(N, 2, 2, generator=g, dtype=torch.float64),
                      torch.randn(N, 2, 2, generator=g, dtype=torch.float64)) / math.sqrt(2)
    return a * MU + b * Y + math.sqrt(a * a * S * S + c * c) * z


def _check_clean(x, var_tol=0.08, extra=0.0):
    """Mean mu within 5 standard errors (+ discretisation) and per-entry variance s^2."""
    se = S / math.sqrt(N)
    assert (x.mean(0) - MU).abs().max() < 5 * se + extra
    var = (x - x.mean(0)).abs().pow(2).mean(0)
    assert torch.allclose(var, torch.full_like(var, S * S), rtol=var_tol)


def test_pc_sampler_from_true_prior_recovers_clean_distribution():
    proc = OUVE()
    pipe = _pipe(proc, "sgmse-score", {"name": "sgmse-pc", "steps": 30, "snr": 0.5})
    cond = Y.expand(N, 2, 2)
    x = pipe.sample(N, cond=cond, x_init=_true_p1(proc), generator=torch.Generator().manual_seed(1))
    assert pipe.last_nfe == 60
    # ends at t = 0 after the last step of size t_eps: the residual std is the O(1/N) error
    _check_clean(x, var_tol=0.1, extra=0.01)


def test_pf_ode_from_true_prior_recovers_clean_distribution():
    proc = OUVE()
    pipe = _pipe(proc, "sgmse-score", {"name": "sgmse-ode", "steps": 60, "method": "heun"})
    x = pipe.sample(N, cond=Y.expand(N, 2, 2), x_init=_true_p1(proc))
    assert pipe.last_nfe == 119
    # the ODE ends at t_eps: compare with the exact marginal there
    a, b, c = (float(v) for v in proc.coefficients(torch.tensor(proc.t_min, dtype=torch.float64)))
    m = a * MU + b * Y
    assert (x.mean(0) - m).abs().max() < 5 * S / math.sqrt(N)
    var = (x - x.mean(0)).abs().pow(2).mean(0)
    assert torch.allclose(var, torch.full_like(var, a * a * S * S + c * c), rtol=0.08)


def test_sb_sde_converges_to_clean_distribution():
    """Posterior (ancestral) bridge steps with the exact x0_hat: error in the variance is O(1/N)."""
    proc = SchroedingerBridge()
    cond = Y.expand(N, 2, 2)
    errs = []
    for steps in (50, 400):
        pipe = _pipe(proc, "sgmse-x0", {"name": "sb-sde", "steps": steps})
        x = pipe.sample(N, cond=cond, x_init=proc.prior(N, (2, 2), cond=cond),
                        generator=torch.Generator().manual_seed(2))
        assert pipe.last_nfe == steps
        assert (x.mean(0) - MU).abs().max() < 5 * S / math.sqrt(N)
        errs.append(abs((x - x.mean(0)).abs().pow(2).mean().item() - S * S))
    assert errs[1] < errs[0] / 3
    _check_clean(x, var_tol=0.06)


def test_sb_ode_maps_y_to_the_posterior_mean():
    """The bridge ODE is deterministic from x_1 = y: with the exact denoiser of the toy (x0
    independent of y) every sample lands on the mean a mu + b y of the marginal at the end time
    t_eps (-> mu as t_eps -> 0); the first step (c_1 = 0) stays finite."""
    proc = SchroedingerBridge()
    pipe = _pipe(proc, "sgmse-x0", {"name": "sb-ode", "steps": 50})
    cond = Y.expand(8, 2, 2)
    x = pipe.sample(8, cond=cond, x_init=proc.prior(8, (2, 2), cond=cond))
    assert pipe.last_nfe == 50
    a, b, _ = (float(v) for v in proc.coefficients(torch.tensor(proc.t_min, dtype=torch.float64)))
    assert torch.allclose(x, (a * MU + b * Y).expand(8, 2, 2), atol=1e-9)
    assert (x[0] - MU).abs().max() < 1e-3


def test_sb_sde_step_is_the_exact_posterior():
    """With x0_hat = x0 one SDE step maps N(a_s x0 + b_s y, c_s^2) onto N(a_u x0 + b_u y, c_u^2)."""
    proc = SchroedingerBridge()
    x0 = torch.full((N * 10, 1), 0.4 - 0.3j, dtype=torch.complex128)
    y = torch.full_like(x0, -0.1 + 0.5j)
    s, u = 0.7, 0.35
    g = torch.Generator().manual_seed(3)
    xs = proc.perturb(x0, torch.full((x0.shape[0],), s, dtype=torch.float64), y, g).x_t
    s2s, s2u = (float(proc.sigma2(torch.tensor(v, dtype=torch.float64))) for v in (s, u))
    r = s2u / s2s
    z = torch.complex(torch.randn(x0.shape, generator=g, dtype=torch.float64),
                      torch.randn(x0.shape, generator=g, dtype=torch.float64)) / math.sqrt(2)
    xu = r * xs + (1 - r) * x0 + math.sqrt(s2u * (1 - r)) * z
    a, b, c = (float(v) for v in proc.coefficients(torch.tensor(u, dtype=torch.float64)))
    assert (xu.mean() - (a * x0[0, 0] + b * y[0, 0])).abs() < 5 * c / math.sqrt(x0.shape[0])
    assert xu.var().item() == pytest.approx(c * c, rel=0.03)


def test_per_sample_generators_make_samples_batch_invariant():
    proc = OUVE()
    pipe = _pipe(proc, "sgmse-score", {"name": "sgmse-pc", "steps": 5})
    cond = Y.expand(4, 2, 2).to(torch.complex64)
    x_init = proc.prior(4, (2, 2), cond=cond, generator=[10, 11, 12, 13])
    full = pipe.sample(4, cond=cond, x_init=x_init, generator=[0, 1, 2, 3])
    one = pipe.sample(1, cond=cond[2:3], x_init=x_init[2:3], generator=[2])
    assert torch.allclose(full[2], one[0], atol=1e-6)
    assert torch.isfinite(torch.view_as_real(full)).all()


def test_storm_requires_the_condition_stack():
    proc = OUVE()
    pipe = _pipe(proc, "sgmse-score", {"name": "storm", "steps": 3})
    cond = Y.expand(2, 2, 2)
    with pytest.raises(ShapeError, match="stack"):
        pipe.sample(2, cond=cond, x_init=cond.clone())
    stack = torch.stack([cond, cond], 1)
    x = pipe.sample(2, cond=stack, x_init=proc.prior(2, (2, 2), cond=stack), generator=[0, 1])
    assert x.shape == (2, 2, 2) and pipe.last_nfe == 6


def test_one_step_predictive_uses_only_y():
    proc = OUVE()
    pipe = _pipe(proc, "predictive", "one-step")
    cond = Y.expand(3, 2, 2)
    a = pipe.sample(3, cond=cond, x_init=torch.zeros_like(cond))
    b = pipe.sample(3, cond=cond, x_init=torch.ones_like(cond))
    assert torch.equal(a, b) and pipe.last_nfe == 1


def test_every_registered_sampler_samples_sb_correctly_or_is_refused():
    """The pinned bridge (x_1 = y exactly, c(1) = 0): each registered sampler either reaches the
    closed form of the complex Gaussian toy from y (mean mu; for stochastic samplers also the
    variance s^2) or is refused at construction, naming the samplers that fit."""
    proc = SchroedingerBridge()
    n = 2000
    cond = Y.expand(n, 2, 2)
    accepted = []
    for name in dk.registry().names("sampler"):
        try:
            sampler = dk.create("sampler", {"name": name, "steps": 400})
        except dk.ConfigError:
            sampler = dk.create("sampler", name)
        try:
            pipe = _pipe(proc, "sgmse-x0", sampler)
        except dk.CompatibilityError as exc:
            assert "fit" in str(exc), (name, str(exc))
            continue
        accepted.append(name)
        x = pipe.sample(n, cond=cond, x_init=proc.prior(n, (2, 2), cond=cond), generator=torch.Generator().manual_seed(5))
        a, b, _ = (float(v) for v in proc.coefficients(torch.tensor(proc.t_min, dtype=torch.float64)))
        assert (x.mean(0) - (a * MU + b * Y)).abs().max() < 6 * S / math.sqrt(n) + 1e-3, name
        if sampler.stochastic:
            var = (x - x.mean(0)).abs().pow(2).mean().item()
            assert var == pytest.approx(S * S, rel=0.06), (name, var)
    # one-step: x0_hat(y, 1); sb-ode / sb-sde are the bridge plugin's bridge-ode / bridge-sde
    # (sb is an instance of the bridge family) with the speech reference's grid
    assert sorted(accepted) == ["bridge-heun", "bridge-ode", "bridge-sde", "one-step", "sb-ode", "sb-sde"], accepted
