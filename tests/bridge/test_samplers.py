"""Bridge samplers: the posterior step is exact, the last step returns x0_hat, the Gaussian toy
(x0 ~ N(mu, s^2), fixed x1, exact E[x0 | x_t]) at 10 and 50 steps, fit checks, NFE, batch
invariance, and the Schrodinger-bridge regression of issue 17 (from y with x0_hat = x0 -> x0)."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit_bridge.samplers import bridge_grid

from .oracles import GaussianBridgeOracle

SCHEDULES = ["gmax", "vp", "ve", "sb"]
MU, S, DIM = 0.7, 0.5, 4


def _proc(schedule):
    return dk.create("process", "bridge", schedule=schedule)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_posterior_step_maps_marginal_onto_marginal(schedule):
    """With x0_hat = x0: k_s (a_s x0 + b_s x1) + k_0 x0 = a_u x0 + b_u x1 and
    k_s^2 c_s^2 + k_z^2 = c_u^2, for every pair s > u on a grid (exact algebra), and one
    sampler step checked by Monte Carlo."""
    p = _proc(schedule)
    t = torch.linspace(1, 0, 41, dtype=torch.float64)
    s, u = t[:-1].repeat_interleave(40), t[:-1].repeat(40)
    keep = u < s
    s, u = s[keep], u[keep]
    ks, k0, kz = p.posterior_coefficients(s, u)
    a_s, b_s, c_s = p.coefficients(s)
    a_u, b_u, c_u = p.coefficients(u)
    torch.testing.assert_close(ks * a_s + k0, a_u, rtol=0, atol=1e-12)
    torch.testing.assert_close(ks * b_s, b_u, rtol=0, atol=1e-12)
    torch.testing.assert_close(ks ** 2 * c_s ** 2 + kz ** 2, c_u ** 2, rtol=1e-10, atol=1e-10 * float(c_u.max()) ** 2)

    # one step of the sampler itself (grid uniform, step 1: s = 0.75 -> u = 0.5)
    n = 200_000
    x0 = torch.full((n, 1), 0.4, dtype=torch.float64)
    x1 = torch.full((n, 1), -1.2, dtype=torch.float64)
    sampler = dk.create("sampler", {"name": "bridge-sde", "steps": 4, "grid": "uniform"})
    g = torch.Generator().manual_seed(0)
    ts = torch.full((n,), 0.75, dtype=torch.float64)
    xs = p.perturb(x0, ts, x1, g).x_t
    plan = sampler.plan(p, xs)
    xu = sampler.posterior(xs, x0, plan, 1, g)
    a, b, c = (float(v) for v in p.coefficients(torch.tensor(0.5, dtype=torch.float64)))
    assert abs(xu.mean().item() - (a * 0.4 + b * -1.2)) < 5 * c / math.sqrt(n)
    assert xu.var().item() == pytest.approx(c * c, rel=0.02)


@pytest.mark.parametrize("name", ["bridge-sde", "bridge-ode", "bridge-heun"])
def test_last_step_returns_x0_hat(name):
    p = _proc("gmax")
    target = torch.tensor([[0.25, -0.5, 0.75]])

    class Const(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return target.expand_as(x)

    for grid in ("framebridge", "uniform", "power"):
        pipe = dk.Pipeline(process=p, network=Const(), parameterization="x0",
                           sampler={"name": name, "steps": 5, "grid": grid}, sample_shape=(3,))
        x = pipe.sample(4, cond=torch.randn(4, 3), generator=torch.Generator().manual_seed(0))
        assert torch.equal(x, target.expand(4, 3)), (name, grid)
        assert pipe.last_nfe == (8 if name == "bridge-heun" else 5)  # Heun: 1 + 2 (N - 2) + 1


def test_default_grid_is_framebridge():
    p = _proc("gmax")
    t = bridge_grid(p, 4, "framebridge")
    # t_i = (i + 1) / (N + 1) for i = N..1 (first at t = 1, x = x1), then the step to 0 (x0_hat)
    torch.testing.assert_close(t, torch.tensor([1.0, 0.8, 0.6, 0.4, 0.0], dtype=torch.float64))
    sampler = dk.create("sampler", "bridge-sde")
    assert sampler.config.grid == "default" and p.default_grid == "framebridge"
    torch.testing.assert_close(sampler.plan(p, torch.zeros(1, dtype=torch.float64)).t, bridge_grid(p, 10, "framebridge"))
    sb = dk.create("process", "sb")  # the speech reference's grid
    torch.testing.assert_close(sampler.plan(sb, torch.zeros(1, dtype=torch.float64)).t, torch.linspace(1, sb.t_min, 11, dtype=torch.float64))


def _exact_variance(p, t, ode: bool) -> float:
    """Variance of the sampler's output on the Gaussian toy, propagated exactly: the steps are
    linear in x and x0_hat = mu + g (x - a mu - b x1), g = a s^2 / (a^2 s^2 + c^2)."""
    a, b, c = p.coefficients(t)
    ks, k0, kz = p.posterior_coefficients(t[:-1], t[1:])
    v = 0.0
    for i in range(len(t) - 1):
        den = a[i] ** 2 * S * S + c[i] ** 2
        g = float(a[i] * S * S / den) if den > 0 else 0.0
        if ode and i > 0:
            r = float(c[i + 1] / c[i])
            v = (float(a[i + 1]) * g + r * (1 - float(a[i]) * g)) ** 2 * v
        else:
            v = (float(ks[i]) + float(k0[i]) * g) ** 2 * v + (float(kz[i]) ** 2 if i < len(t) - 2 else 0.0)
    return v


def _toy(schedule, name, param, steps, grid, n=20_000, seed=0):
    p = _proc(schedule)
    x1 = torch.full((1, DIM), -1.3, dtype=torch.float64)
    out = {"x0": "x0", "eps-psi": "eps_psi", "v-psi": "v_psi"}[param]
    net = GaussianBridgeOracle(p, MU, S, x1, out)
    pipe = dk.Pipeline(process=p, network=net, parameterization=param,
                       sampler={"name": name, "steps": steps, "grid": grid}, sample_shape=(DIM,))
    x = pipe.sample(n, cond=x1.expand(n, DIM), generator=torch.Generator().manual_seed(seed))
    return p, pipe, x


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", ["bridge-sde", "bridge-ode"])
@pytest.mark.parametrize("steps", [10, 50])
def test_gaussian_toy_mean_and_exact_variance(schedule, name, steps):
    """Mean mu within sampling error at 10 and 50 steps; the variance equals what the first-order
    step with the plug-in x0_hat = E[x0 | x_t] gives exactly (a linear-Gaussian recursion), within
    sampling error. That variance is below s^2 at few steps (each step drops k_0^2 Var(x0 | x_t),
    Bao et al. 2022) and converges to s^2 (see the next test)."""
    p, pipe, x = _toy(schedule, name, "x0", steps, "power")
    n = x.shape[0]
    assert pipe.last_nfe == steps
    assert (x.mean(0) - MU).abs().max() < 5 * S / math.sqrt(n) + 2e-3
    want = _exact_variance(p, bridge_grid(p, steps, "power", 3.0), ode=name == "bridge-ode")
    var = x.var(0)
    assert ((var - want).abs() / want).max() < 5 * math.sqrt(2 / n), (var, want)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_first_order_variance_converges_to_the_data_variance(schedule):
    p = _proc(schedule)
    for ode in (False, True):
        errs = [abs(_exact_variance(p, bridge_grid(p, n, "power", 3.0), ode) - S * S) for n in (10, 50, 400, 2000)]
        assert errs[0] > errs[1] > errs[2] > errs[3], errs
        assert errs[3] < 0.01 * S * S, errs


@pytest.mark.parametrize("param", ["x0", "eps-psi", "v-psi"])
def test_gaussian_toy_heun_recovers_the_data_distribution_at_50_steps(param):
    """Second order: at 50 steps (98 NFE) mean and variance of N(mu, s^2) within sampling error."""
    _, pipe, x = _toy("gmax", "bridge-heun", param, 50, "power")
    n = x.shape[0]
    assert pipe.last_nfe == 98 == pipe.sampler.expected_nfe()
    assert (x.mean(0) - MU).abs().max() < 5 * S / math.sqrt(n) + 2e-3
    assert ((x.var(0) - S * S).abs() / (S * S)).max() < 5 * math.sqrt(2 / n)


def test_parameterizations_give_the_same_samples():
    xs = [_toy("gmax", "bridge-sde", param, 10, "framebridge", n=64)[2] for param in ("x0", "eps-psi", "v-psi")]
    torch.testing.assert_close(xs[0], xs[1], rtol=0, atol=1e-9)
    torch.testing.assert_close(xs[0], xs[2], rtol=0, atol=1e-9)


def test_ode_first_step_choice():
    """first_step='ode' leaves x1 deterministically: with x0 independent of x1 every sample lands
    on the same point (mu); 'sde' (default) spreads them."""
    _, _, det = _toy("gmax", "bridge-ode", "x0", 10, "framebridge", n=32)
    p = _proc("gmax")
    x1 = torch.full((1, DIM), -1.3, dtype=torch.float64)
    pipe = dk.Pipeline(process=p, network=GaussianBridgeOracle(p, MU, S, x1), parameterization="x0",
                       sampler={"name": "bridge-ode", "steps": 10, "first_step": "ode"}, sample_shape=(DIM,))
    one = pipe.sample(32, cond=x1.expand(32, DIM))
    torch.testing.assert_close(one, torch.full_like(one, MU), rtol=0, atol=1e-9)
    assert det.std(0).min() > 0.05


def test_per_sample_generators_make_samples_batch_invariant():
    p = _proc("gmax")
    x1 = torch.randn(4, DIM, dtype=torch.float64)
    net = GaussianBridgeOracle(p, MU, S, torch.zeros(1, DIM, dtype=torch.float64))
    for name in ("bridge-sde", "bridge-ode", "bridge-heun"):
        pipe = dk.Pipeline(process=p, network=net, parameterization="x0", sampler={"name": name, "steps": 6},
                           sample_shape=(DIM,))
        full = pipe.sample(4, cond=x1, generator=[0, 1, 2, 3])
        one = pipe.sample(1, cond=x1[2:3], generator=[2])
        torch.testing.assert_close(full[2], one[0], rtol=0, atol=1e-12)


def test_fit_checks_refuse_only_what_cannot_run():
    p = _proc("gmax")
    # generic eps / v / score convert to x0 by dividing by a = 0 or r = 0 at t = 1
    for param in ("eps", "v", "score"):
        with pytest.raises(dk.CompatibilityError, match="samplers that fit|parameterizations that fit"):
            dk.Pipeline(process=p, network=torch.nn.Identity(), parameterization=param, sampler="bridge-sde")
    # the bridge samplers need the bridge family; solvers that divide by c exclude PinnedBridge
    with pytest.raises(dk.CompatibilityError, match="samplers that fit"):
        dk.Pipeline(process="vp", network=torch.nn.Identity(), parameterization="x0", sampler="bridge-sde")
    for name in ("ddim", "dpm-solver++", "heun", "ode", "sde-ancestral", "euler-maruyama"):
        if ("sampler", name) not in dk.registry():
            continue
        with pytest.raises(dk.CompatibilityError, match="bridge-sde"):
            dk.Pipeline(process=p, network=torch.nn.Identity(), parameterization="x0", sampler=name)
    for param in ("x0", "eps-psi", "v-psi", "saf"):
        for name in ("bridge-sde", "bridge-ode", "bridge-heun"):
            dk.Pipeline(process=p, network=torch.nn.Identity(), parameterization=param, sampler=name)


# ---------------------------------------------------------------- Schrodinger bridge (speech)
def _sb_point_mass(name, grid=None):
    """The speech plugin's sb samplers from y with an exact x0_hat = x0 (the denoiser returns the
    clean signal of each sample): complex spectrogram-like states."""
    proc = dk.create("process", "sb")
    g = torch.Generator().manual_seed(0)
    x0 = torch.complex(torch.randn(64, 3, 5, generator=g), torch.randn(64, 3, 5, generator=g)).to(torch.complex128)
    y = x0 + 0.8 * torch.complex(torch.randn(64, 3, 5, generator=g), torch.randn(64, 3, 5, generator=g))

    class Exact(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return x0

    spec = {"name": name} if grid is None else {"name": name, "grid": grid}
    pipe = dk.Pipeline(process=proc, network=Exact(), parameterization={"name": "sgmse-x0", "skip": False},
                       sampler=spec)
    out = pipe.sample(64, cond=y, x_init=proc.prior(64, (3, 5), cond=y), generator=torch.Generator().manual_seed(1))
    return proc, x0, y, out


@pytest.mark.parametrize("name", ["sb-ode", "sb-sde"])
def test_sb_sampler_from_y_with_exact_x0_returns_x0(name):
    """Regression (issue 17): started from y with x0_hat = x0 the bridge returns x0. With the
    reference grid, which ends at t_eps = 1e-4, it returns the marginal mean a x0 + b y there
    (ODE: exactly; SDE: plus the last posterior step's tiny spread); on a grid ending at 0, x0."""
    proc, x0, y, out = _sb_point_mass(name)
    t = torch.linspace(1, proc.t_min, 51, dtype=torch.float64)
    a, b, _ = (float(v) for v in proc.coefficients(t[-1]))
    # spread of the last SDE step: k_s c(t_{N-1}) with k_s = sigma^2(t_N) / sigma^2(t_{N-1})
    spread = float(proc.posterior_coefficients(t[-2], t[-1])[0] * proc.coefficients(t[-2])[2])
    if name == "sb-ode":
        torch.testing.assert_close(out, a * x0 + b * y, rtol=0, atol=1e-10)
    assert (out - (a * x0 + b * y)).abs().max() <= 6 * spread + 1e-12
    assert (out - x0).abs().max() < 6 * spread + b * (y - x0).abs().max() + 1e-12 < 5e-3  # |y - x0| ~ 1
    _, x0, _, out = _sb_point_mass(name, grid="framebridge")
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)
