"""Gaussian data statistics (diffusekit.datastats): closed-form checks of the estimates, the
error profile and the teleport rule, and what dk.train records."""

from __future__ import annotations

import math

import torch

import diffusekit as dk
from diffusekit import datastats
from diffusekit.testing.oracles import GaussianMixture


def _gaussian(n, d, seed=0, rank=None, noise=0.0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    k = d if rank is None else rank
    s = torch.linspace(4.0, 0.5, k, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * s.sqrt()
    x = mu + z @ q[:, :k].T + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, mu, s, q[:, :k]


def test_full_rank_statistics_match_the_generating_gaussian():
    x, mu, s, u = _gaussian(20_000, 6)
    stats = datastats.gaussian_statistics(x.float())
    torch.testing.assert_close(stats[datastats.MEAN].double(), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(stats[datastats.EIGVALS].double(), s, rtol=0.05, atol=0)
    assert abs(torch.linalg.det(stats[datastats.EIGVECS].double().T @ u).abs() - 1) < 0.02
    assert float(stats[datastats.RESVAR]) == 0.0


def test_low_rank_statistics_keep_the_top_spectrum_and_the_residual_variance():
    """Above FULL_DIM: a randomized SVD; rank-8 signal plus isotropic noise 0.1^2."""
    d = datastats.FULL_DIM + 76
    x, mu, s, u = _gaussian(3000, d, rank=8, noise=0.1)
    stats = datastats.gaussian_statistics(x.float(), rank=8)
    assert stats[datastats.EIGVECS].shape == (d, 8)
    torch.testing.assert_close(stats[datastats.EIGVALS].double(), s + 0.01, rtol=0.1, atol=0)
    assert abs(float(stats[datastats.RESVAR]) - 0.01) < 0.001
    # the kept span is the signal's span
    proj = stats[datastats.EIGVECS].double().T @ u
    assert float(torch.linalg.svdvals(proj).min()) > 0.98


def test_gaussian_posterior_mean_is_the_closed_form():
    x, mu, s, u = _gaussian(5000, 3)
    stats = {datastats.MEAN: mu, datastats.EIGVALS: s, datastats.EIGVECS: u, datastats.RESVAR: torch.tensor(0.0)}
    xt = torch.randn(4, 3, dtype=torch.float64)
    cov = (u * s) @ u.T
    sigma = 0.7
    expected = mu + (cov @ torch.linalg.inv(cov + sigma ** 2 * torch.eye(3, dtype=torch.float64)) @ (xt - mu).T).T
    torch.testing.assert_close(datastats.gaussian_posterior_mean(xt, sigma, stats), expected)


def test_error_profile_is_small_for_gaussian_data_and_large_for_a_ring():
    """Gaussian data: the Gaussian model is exact, so the profile measures only the empirical
    posterior's finite-sample error; a ring of tight modes is far from Gaussian at moderate noise,
    and the teleport rule therefore starts much earlier (larger sigma*) for it."""
    gauss = _gaussian(6000, 2)[0].float()
    ring = GaussianMixture.ring(8, 1.5, 0.1).sample(6000, torch.Generator().manual_seed(0))
    out = {}
    for name, data in (("gauss", gauss), ("ring", ring)):
        stats = datastats.gaussian_statistics(data)
        stats.update(datastats.error_profile(data))
        out[name] = stats
        sig, err = stats[datastats.PROFILE_SIGMA], stats[datastats.PROFILE_ERR]
        assert sig.shape == err.shape == (20,) and bool((sig[1:] > sig[:-1]).all())
        assert float(err[-1]) < 0.01  # both are Gaussian-like at 50x the data scale
    mid = slice(7, 13)  # sigma from about 0.5 to 5 data scales
    assert float(out["ring"][datastats.PROFILE_ERR][mid].max()) > 10 * float(out["gauss"][datastats.PROFILE_ERR][mid].max())
    s_gauss = datastats.teleport_sigma(out["gauss"], 0.05) / math.sqrt(float(gauss.var(0).sum()) / 2)
    s_ring = datastats.teleport_sigma(out["ring"], 0.05) / math.sqrt(float(ring.var(0).sum()) / 2)
    assert s_ring > 3 * s_gauss, (s_ring, s_gauss)
    assert datastats.teleport_sigma({}, 0.05) is None


def test_teleport_sigma_follows_the_integral_rule():
    """Hand-made profile: e = 1 below sigma = 1, 0 above; delta(sigma) = (1 / sigma) int e."""
    sig = torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0])
    err = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    buffers = {datastats.PROFILE_SIGMA: sig, datastats.PROFILE_ERR: err}
    # delta(1) = 0.5 * 1 * 1 / 1 = 0.5 (trapezoid between 1 and 2); delta(0.5) = (0.5 + 0.5) / 0.5 = 2
    assert datastats.teleport_sigma(buffers, 0.6) == 1.0
    assert datastats.teleport_sigma(buffers, 0.4) == 2.0
    assert datastats.teleport_sigma(buffers, 2.5) == 0.5


def test_train_records_statistics_for_unconditional_data_only(tmp_path):
    ring = GaussianMixture.ring(8, 1.5, 0.1)
    data = ring.sample(2000, torch.Generator().manual_seed(0))
    pipe = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                       parameterization="eps", sampler={"name": "deis", "steps": 5})
    state = torch.get_rng_state()
    dk.train(pipe, data, steps=2, batch_size=16, progress=False, out_dir=tmp_path / "run")
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is untouched
    assert set(pipe.buffers) >= set(datastats.STAT_KEYS) | {datastats.PROFILE_SIGMA, datastats.PROFILE_ERR}
    torch.testing.assert_close(pipe.buffers[datastats.MEAN], data.mean(0), atol=1e-5, rtol=0)
    back = dk.Pipeline.load(tmp_path / "run")
    for k, v in pipe.buffers.items():
        assert torch.equal(back.buffers[k], v)
    cond = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2, "hidden": 16, "depth": 1, "num_classes": 8},
                       parameterization="eps", sampler={"name": "deis", "steps": 5})
    dk.train(cond, dk.Example(data, torch.randint(8, (2000,))), steps=2, batch_size=16, progress=False)
    assert not any(k in cond.buffers for k in datastats.STAT_KEYS)
    off = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2}, parameterization="eps")
    dk.train(off, data, steps=1, batch_size=16, progress=False, data_stats=False)
    assert not off.buffers
