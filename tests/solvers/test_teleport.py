"""Analytical teleportation: exact for Gaussian data, helps at low NFE on a mixture, persisted."""

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.testing.metrics import mmd
from diffusekit.testing.oracles import GaussianMixture

from solver_helpers import make_pipe
from diffusekit_solvers import fit_gaussian_stats
from diffusekit_solvers.gaussian import point
from diffusekit.datastats import EIGVALS, EIGVECS, MEAN, RESVAR
from diffusekit_solvers.teleport import gaussian_flow


def test_flow_is_exact_for_gaussian_data():
    """The closed form moves N(a_T mu, a_T^2 S + c_T^2) onto N(a_t mu, a_t^2 S + c_t^2) (anisotropic S)
    and composes: T -> t1 -> t2 equals T -> t2."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    s = torch.tensor([2.0, 0.5, 0.01], dtype=torch.float64)
    mu = torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64)
    vp = dk.create("process", "vp")
    p0, p1, p2 = (point(vp, t) for t in (1.0, 0.4, 0.05))
    cov0 = p0.a ** 2 * (q * s) @ q.T + p0.c ** 2 * torch.eye(3, dtype=torch.float64)
    z = p0.a * mu + torch.randn(200_000, 3, dtype=torch.float64) @ torch.linalg.cholesky(cov0).T
    z2 = gaussian_flow(z, p0.a, p0.c, p2.a, p2.c, mu, s, q)
    cov2 = p2.a ** 2 * (q * s) @ q.T + p2.c ** 2 * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(torch.cov(z2.T), cov2, rtol=0.02, atol=2e-3)
    via = gaussian_flow(gaussian_flow(z[:10], p0.a, p0.c, p1.a, p1.c, mu, s, q), p1.a, p1.c, p2.a, p2.c, mu, s, q)
    torch.testing.assert_close(via, z2[:10])


def test_teleport_matches_the_closed_form_and_saves_steps():
    """Gaussian data with its true statistics: the teleported solver lands closer to the exact
    PF-ODE solution with the same NFE (the skipped part is exact and costs nothing)."""
    torch.set_default_dtype(torch.float64)
    try:
        mix = GaussianMixture(torch.tensor([[0.5, -0.3]]), 0.4)
        proc = dk.create("process", "vp")
        x_T = proc.prior(64, (2,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        p0, p1 = point(proc, proc.t_max), point(proc, proc.t_min)
        exact = gaussian_flow(x_T, p0.a, p0.c, p1.a, p1.c, mix.means[0], torch.full((2,), 0.16), torch.eye(2))
        for name, params in [("ddim", {}), ("deis", {}), ("heun", {}),
                             ("dpm-solver++", {"variant": "2S", "schedule": "logsnr"}),
                             ("dpm-solver++", {"variant": "2M", "schedule": "logsnr"})]:
            errs = {}
            for f in (0.0, 0.5):
                pipe = make_pipe(proc, mix, dk.create("sampler", name, steps=6, teleport=f, **params))
                pipe.buffers.update({MEAN: mix.means[0], EIGVALS: torch.full((2,), 0.16), EIGVECS: torch.eye(2),
                                     RESVAR: torch.tensor(0.0)})
                errs[f] = float((pipe.sample(64, x_init=x_T) - exact).abs().max())
                assert pipe.last_nfe == pipe.sampler.expected_nfe()
            assert errs[0.5] < 0.6 * errs[0.0], (name, errs)
    finally:
        torch.set_default_dtype(torch.float32)


def test_teleport_helps_at_low_nfe_on_a_mixture(ring):
    ref = ring.sample(2000, torch.Generator().manual_seed(1))
    data = ring.sample(20_000, torch.Generator().manual_seed(5))
    proc = dk.create("process", "vp")
    x_T = proc.prior(2000, (2,), generator=torch.Generator().manual_seed(0))
    out = {}
    for f in (0.0, 0.25):
        pipe = make_pipe(proc, ring, dk.create("sampler", "deis", steps=5, teleport=f))
        fit_gaussian_stats(pipe, data)
        out[f] = mmd(pipe.sample(2000, x_init=x_T), ref)
        assert pipe.last_nfe == 5
    assert out[0.25] < 0.5 * out[0.0], out


def test_stats_are_saved_with_the_pipeline(tmp_path, ring):
    pipe = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2}, parameterization="eps",
                       sampler=dk.create("sampler", "deis", steps=5, teleport=0.2), sample_shape=(2,))
    stats = fit_gaussian_stats(pipe, ring.sample(1000, torch.Generator().manual_seed(0)))
    assert set(pipe.buffers) >= {MEAN, EIGVALS, EIGVECS}
    pipe.save(tmp_path / "run")
    back = dk.Pipeline.load(tmp_path / "run")
    for k, v in stats.items():
        torch.testing.assert_close(back.buffers[k], v)
    assert back.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 2)


def test_missing_stats_error_names_the_fix(ring):
    pipe = make_pipe("vp", ring, dk.create("sampler", "deis", steps=5, teleport=0.2))
    with pytest.raises(ConfigError, match="fit_gaussian_stats"):
        pipe.sample(4)
    with pytest.raises(ConfigError, match="teleport"):
        dk.create("sampler", "deis", teleport=1.5)


def test_auto_teleport_follows_the_recorded_statistics(ring):
    """teleport="auto" (the default): nothing without statistics; with them the start moves to
    the rule's sigma* (at most half the log-SNR range), the 5-NFE MMD drops as with a tuned fixed
    fraction, and teleport=0 or an explicit grid still start at t_max."""
    from diffusekit import datastats

    proc = dk.create("process", "vp")
    data = ring.sample(20_000, torch.Generator().manual_seed(5))
    ref = ring.sample(2000, torch.Generator().manual_seed(1))
    x_T = proc.prior(2000, (2,), generator=torch.Generator().manual_seed(0))
    pipe = make_pipe(proc, ring, dk.create("sampler", "deis", steps=5))
    assert pipe.sampler.config.teleport == "auto"
    assert pipe.sampler.with_buffers(pipe.buffers) is pipe.sampler  # no statistics: unchanged
    plain = mmd(pipe.sample(2000, x_init=x_T), ref)
    fit_gaussian_stats(pipe, data)
    resolved = pipe.sampler.with_buffers(pipe.buffers)
    assert resolved is pipe.sampler.with_buffers(pipe.buffers)  # resolved once, plans cached
    sigma = datastats.teleport_sigma(pipe.buffers, pipe.sampler.config.teleport_tol)
    t0 = float(resolved.build_plan(proc).t[0])
    a, _, c = (float(v) for v in proc.coefficients(torch.tensor(t0, dtype=torch.float64)))
    assert abs(c / a - sigma) < 1e-6 * sigma
    auto = mmd(pipe.sample(2000, x_init=x_T), ref)
    assert pipe.last_nfe == 5
    assert auto < 0.5 * plain, (auto, plain)
    never = make_pipe(proc, ring, dk.create("sampler", "deis", steps=5, teleport=0))
    never.buffers.update(pipe.buffers)
    assert float(never.sampler.with_buffers(never.buffers).build_plan(proc).t[0]) == proc.t_max
    explicit = dk.create("sampler", "deis", steps=2, schedule={"name": "explicit", "times": [1.0, 0.5, 0.001]})
    assert explicit.with_buffers(pipe.buffers).build_plan(proc).t.tolist() == [1.0, 0.5, 0.001]
