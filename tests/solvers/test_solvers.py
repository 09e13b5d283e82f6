"""Closed-form checks of every solver: convergence order on a Gaussian oracle, DDIM = first-order
exponential integrator, DPM-Solver++ -> RK45, batch invariance, robust ends, every process form."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.process import AdditiveGaussian, ForwardProcess
from diffusekit.random import randn
from diffusekit.testing.metrics import mmd
from diffusekit.testing.oracles import GaussianMixture, MixtureOracle

from solver_helpers import gaussian_1d, make_pipe, seeds
from diffusekit_solvers.gaussian import point
from diffusekit_solvers.teleport import gaussian_flow

# (registry name, params, nominal global order on the oracle)
SOLVERS = [
    ("ddim", {}, 1),
    ("euler", {}, 1),
    ("heun", {}, 2),
    ("dpm-solver", {"order": 1}, 1),
    ("dpm-solver", {"order": 2}, 2),
    ("dpm-solver", {"order": 3}, 3),
    ("dpm-solver++", {"variant": "2M"}, 2),
    # 3M: third order per step, but its first (first-order) warm-up step has local error
    # O(h^2), which bounds the global order by 2 -- as in the reference implementation.
    ("dpm-solver++", {"variant": "3M"}, 2),
    ("dpm-solver++", {"variant": "2S"}, 2),
    ("unipc", {"order": 1, "variant": "bh1"}, 2),  # UniC raises the order by one
    ("unipc", {"order": 2, "variant": "bh2"}, 3),
    ("deis", {"order": 2}, 2),
    ("deis", {"order": 3}, 2.5),
]


class OUBridge(ForwardProcess, AdditiveGaussian):
    """x_t = e^{-t} x0 + (1 - e^{-t}) y + s sqrt(1 - e^{-2t}) eps: an endpoint process (b != 0)."""

    t_min, t_max = 1e-3, 4.0

    def coefficients(self, t):
        e = torch.exp(-t)
        return e, 1 - e, 0.8 * torch.sqrt(-torch.expm1(-2 * t))

    def endpoint(self, cond, like):
        return cond

    def perturb(self, x0, t, cond=None, generator=None):
        return self.gaussian_perturb(x0, t, cond, generator)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        a, b, c = self.coefficients(torch.tensor(self.t_max, dtype=torch.float64))
        return (float(b) * cond + float(c) * randn((n, *shape), generator, device, dtype)).to(dtype)


def _process(name):
    return OUBridge() if name == "oubridge" else dk.create("process", name)


def _exact(proc, mix, x_T, y=None):
    p0, p1 = point(proc, proc.t_max), point(proc, proc.t_min)
    z = x_T if y is None else x_T - p0.b * y
    out = gaussian_flow(z, p0.a, p0.c, p1.a, p1.c, mix.means[0], mix.stds[0] ** 2 * torch.ones(mix.dim),
                        torch.eye(mix.dim, dtype=torch.float64))
    return out if y is None else out + p1.b * y


@pytest.fixture
def f64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("process", ["vp", "edm", "oubridge"])
@pytest.mark.parametrize("name,params,order", SOLVERS, ids=[f"{n}-{p}" for n, p, _ in SOLVERS])
def test_convergence_order(process, name, params, order, f64):
    """Max error vs the closed-form PF-ODE solution of Gaussian data: log2 slope ~ order."""
    mix = gaussian_1d()
    proc = _process(process)
    y = torch.tensor([[1.0, -0.5]]).expand(16, 2) if process == "oubridge" else None
    x_T = proc.prior(16, (2,), cond=y, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = _exact(proc, mix, x_T, y)
    nfe = (24, 48, 96) if name != "heun" else (12, 24, 48)
    errs = []
    for n in nfe:
        sampler = dk.create("sampler", name, steps=n, final_sigma_zero=False, **params)
        pipe = make_pipe(proc, mix, sampler)
        errs.append(float((pipe.sample(16, cond=y, x_init=x_T) - ref).abs().max()))
    slope = math.log2(errs[-2] / errs[-1])
    assert slope > order - 0.4, (errs, slope)
    assert errs[-1] < (5e-2 if order == 1 else 1e-2)


def test_ddim_eta0_is_the_first_order_exponential_integrator(ring, f64):
    """DDIM(eta=0) = DPM-Solver-1 (noise form) = DPM-Solver++ order 1 (data form) =
    z_t = (sigma_t / sigma_s) z_s + alpha_t (1 - e^{-h}) x0_hat, step by step."""
    proc = dk.create("process", "vp")
    x_T = proc.prior(32, (2,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    outs = [make_pipe(proc, ring, dk.create("sampler", n, steps=12, **p)).sample(32, x_init=x_T)
            for n, p in [("ddim", {"eta": 0.0}), ("dpm-solver", {"order": 1}),
                         ("dpm-solver++", {"variant": "1", "schedule": "logsnr"})]]
    sampler = dk.create("sampler", "ddim", steps=12)
    ts = sampler.grid(proc, 12)
    oracle = MixtureOracle(ring, proc)
    x = x_T.clone()
    for s, t in zip(ts[:-1], ts[1:]):
        p, q = point(proc, s), point(proc, t)
        x0 = oracle(x, torch.full((32,), s))
        x = (q.c / p.c) * x + q.a * (-math.expm1(-(q.lam - p.lam))) * x0
    for out in outs:
        torch.testing.assert_close(out, x, rtol=1e-9, atol=1e-9)


def test_dpm_solver_pp_converges_to_rk45(ring, f64):
    proc = dk.create("process", "vp")
    x_T = proc.prior(64, (2,), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = make_pipe(proc, ring, dk.create("sampler", "ode", rtol=1e-9, atol=1e-9)).sample(64, x_init=x_T)
    errs = []
    for n in (25, 100, 400):
        out = make_pipe(proc, ring, dk.create("sampler", "dpm-solver++", variant="3M", steps=n)).sample(64, x_init=x_T)
        errs.append(float((out - ref).abs().max()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-4, errs


STOCHASTIC = [("ddim", {"eta": 1.0}), ("dpm-solver++", {"variant": "2M-SDE"}), ("dpm-solver++", {"variant": "3M-SDE"}),
              ("heun", {"S_churn": 30.0}), ("euler", {"S_churn": 30.0})]


@pytest.mark.parametrize("name,params", STOCHASTIC, ids=[f"{n}-{p}" for n, p in STOCHASTIC])
def test_batch_invariance(name, params, ring):
    """Sample k drawn in a batch of 64 equals the same sample drawn alone (per-sample generators)."""
    sampler = dk.create("sampler", name, steps=6, **params)
    assert sampler.stochastic
    pipe = make_pipe("vp", ring, sampler)
    big = pipe.sample(64, generator=seeds(64))
    for k in (0, 17, 63):
        one = pipe.sample(1, generator=[torch.Generator().manual_seed(k)])
        torch.testing.assert_close(one[0], big[k], rtol=1e-5, atol=1e-5)
    again = pipe.sample(64, generator=seeds(64))
    torch.testing.assert_close(again, big)


ALL = [("ddim", {}), ("dpm-solver", {"order": 2}), ("dpm-solver", {"order": 3}), ("dpm-solver++", {}),
       ("dpm-solver++", {"variant": "2M"}), ("dpm-solver++", {"variant": "2S"}),
       ("dpm-solver++", {"variant": "2M-SDE"}), ("unipc", {"variant": "bh1"}), ("unipc", {"variant": "bh2"}),
       ("deis", {}), ("heun", {}), ("euler", {})]


@pytest.mark.parametrize("process", ["vp", "subvp", "ve", "edm", "pfgmpp"])
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_finite_at_the_final_step_for_every_solver(process, steps):
    """Every solver ends finite with honest NFE, including the jump to sigma = 0 (EDM, PFGM++,
    whose heavy-tailed process is DenoisingODE but not AdditiveGaussian) at 1-5 steps.
    Stochastic configurations inject Gaussian noise and are refused on PFGM++."""
    proc = dk.create("process", process)
    mix = GaussianMixture.ring(4, 1.0, 0.2)
    for name, params in ALL:
        sampler = dk.create("sampler", name, steps=steps, **params)
        if process == "pfgmpp":
            oracle = pytest.importorskip("diffusekit_pfgmpp.oracle")
            if sampler.stochastic:
                with pytest.raises(dk.CompatibilityError, match="AdditiveGaussian"):
                    oracle.oracle_pipeline(proc, mix.means.float(), sampler=sampler)
                continue
            pipe = oracle.oracle_pipeline(proc, mix.means.float(), sampler=sampler)
        else:
            pipe = make_pipe(proc, mix, sampler)
        x = pipe.sample(8, generator=seeds(8))
        assert torch.isfinite(x).all(), (name, params)
        assert pipe.last_nfe == sampler.expected_nfe(), (name, params, pipe.last_nfe)


def test_endpoint_process_samples_the_conditional(ring):
    """b != 0: solve on z = x - b y; the sampled x0 has the data law regardless of y."""
    proc = OUBridge()
    y = torch.tensor([[2.0, -1.0]]).expand(1500, 2)
    ref = ring.sample(1500, torch.Generator().manual_seed(1))
    for name in ("deis", "dpm-solver++", "unipc", "heun"):
        pipe = make_pipe(proc, ring, dk.create("sampler", name, steps=20))
        x = pipe.sample(1500, cond=y, generator=torch.Generator().manual_seed(0))
        assert mmd(x, ref) < 5e-3, name


def test_any_parameterization(ring):
    """Data / noise forms come from the Prediction: x0-, eps-, v-predicting networks agree."""
    proc = dk.create("process", "vp")
    oracle = MixtureOracle(ring, proc)

    def net(kind):
        class Net(dk.Network):
            sample_shape = (2,)

            def forward(self, x, t, cond=None):
                a, _, c = (v[:, None] for v in proc.coefficients(t))
                x0 = oracle(x, t)
                eps = (x - a * x0) / c
                return {"x0": x0, "eps": eps, "v": (a * eps - c * x0) / torch.sqrt(a * a + c * c)}[kind]
        return Net()

    x_T = proc.prior(64, (2,), generator=torch.Generator().manual_seed(0))
    for name in ("deis", "dpm-solver++", "unipc", "dpm-solver"):
        outs = [dk.Pipeline(process=proc, network=net(k), parameterization=k,
                            sampler=dk.create("sampler", name, steps=8)).sample(64, x_init=x_T)
                for k in ("x0", "eps", "v")]
        torch.testing.assert_close(outs[0], outs[1], rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(outs[0], outs[2], rtol=2e-3, atol=2e-3)


def test_default_sampler_is_deis_for_score_sde_processes(ring):
    pipe = make_pipe("vp", ring, None)
    assert type(pipe.sampler).__name__ == "DEIS"


def test_plan_holds_typed_immutable_float64_rows(ring):
    """One frozen Coefficients dataclass per solver; host floats in float64; the Python loop's
    copy holds its times on the state's device; the table for a Scan stacks the numeric fields."""
    from dataclasses import FrozenInstanceError

    from diffusekit.sampler import Coefficients

    proc = dk.create("process", "vp")
    for name in ("ddim", "dpm-solver++", "dpm-solver", "deis", "unipc", "heun", "euler"):
        sampler = dk.create("sampler", name, steps=7)
        plan = sampler.build_plan(proc)
        cls = sampler.coefficients_type()
        assert issubclass(cls, Coefficients) and all(type(r) is cls for r in plan.rows), name
        assert plan.t.dtype == torch.float64 and len(plan.rows) == plan.num_steps
        with pytest.raises(FrozenInstanceError):
            plan.rows[0].t = 0.0
        table = cls.table(plan.rows)
        assert table.dtype == torch.float64 and table.shape == (len(plan.rows), len(cls.numeric()))
        row = cls.from_row(table[0], plan.rows[0].static_key())
        assert all(float(getattr(row, k)) == float(getattr(plan.rows[0], k)) for k in cls.numeric())
        moved = sampler.plan(proc, torch.zeros(1, 2))
        assert all(torch.is_tensor(getattr(moved.rows[0], k)) for k in cls.TIMES)
    assert dk.create("sampler", "dpm-solver++", steps=7).plan(proc, torch.zeros(1, 2)).num_steps == 7


def test_thresholding_bounds_the_data_prediction(ring):
    from diffusekit_solvers.thresholding import dynamic_threshold

    x0 = torch.tensor([[0.5, -3.0, 2.0, 0.1], [0.2, 0.3, -0.1, 0.05]])
    out = dynamic_threshold(x0, 0.995, 2.5)
    assert out.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(out[1], x0[1])  # s = max(quantile, 1) = 1: unchanged
    pipe = make_pipe("vp", ring, dk.create("sampler", "dpm-solver++", steps=8, thresholding=True))
    assert pipe.sample(64, generator=torch.Generator().manual_seed(0)).abs().max() <= 1.05


def test_clear_errors():
    with pytest.raises(ConfigError, match="variant"):
        dk.create("sampler", "dpm-solver++", variant="4M")
    with pytest.raises(ConfigError, match="final_sigma_zero"):
        pipe = make_pipe("ve", gaussian_1d(), dk.create("sampler", "heun", steps=4, final_sigma_zero=True))
        pipe.sample(2)

    class Tokens(ForwardProcess):
        def perturb(self, x0, t, cond=None, generator=None): ...

        def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32): ...

    from diffusekit.process import AdditiveGaussian, DenoisingODE, has_capability

    gaussian = (AdditiveGaussian, DenoisingODE)
    assert not has_capability(Tokens(), gaussian)
    assert has_capability(dk.create("process", "ve"), gaussian)
    assert all(dk.create("sampler", n).requires == (gaussian,) for n, _ in ALL)
