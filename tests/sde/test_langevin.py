"""Langevin corrector stationarity (docs/plugins/sde.md)."""

import torch

from diffusekit_sde.pc import annealed_langevin_step, langevin_step

D, N = 8, 20_000
MEAN, VAR = 0.7, 0.36


def _score(x):
    return -(x - MEAN) / VAR


def _start(seed=0):
    g = torch.Generator().manual_seed(seed)
    return MEAN + VAR ** 0.5 * torch.randn(N, D, generator=g, dtype=torch.float64), g


def test_langevin_keeps_target_gaussian():
    """Started at the target N(m, V I) and driven by its exact score, 40 Langevin steps
    (snr 0.05, batch norms as in the paper) keep the mean and variance; the step size is
    eps ~ 2 (snr)^2 V so the ULA bias V / (1 - eps / 2V) is ~0.25 %."""
    x, g = _start()
    for _ in range(40):
        x = langevin_step(x, _score(x), torch.randn(x.shape, generator=g, dtype=torch.float64), 1.0, 0.05, "batch")
    se = (VAR / (N * D)) ** 0.5
    assert abs(float(x.mean()) - MEAN) < 4 * se
    assert abs(float(x.var()) / VAR - 1) < 0.01


def test_annealed_langevin_matches_ula_stationary_variance():
    """With a fixed step eps the chain x + eps s + sqrt(2 eps) z on N(m, V) has the closed-form
    stationary variance V / (1 - eps / (2 V)); with a large snr the test sees the bias, so it
    would catch a wrong step-size or noise scale."""
    x, g = _start(1)
    snr, std, alpha = 0.5, VAR ** 0.5, 1.0
    eps = 2 * alpha * (snr * std) ** 2
    for _ in range(60):
        x = annealed_langevin_step(x, _score(x), torch.randn(x.shape, generator=g, dtype=torch.float64), alpha,
                                   snr, torch.tensor(std, dtype=torch.float64))
    expected = VAR / (1 - eps / (2 * VAR))
    assert abs(float(x.var()) / expected - 1) < 0.01
    assert abs(float(x.var()) / VAR - 1) > 0.05  # the bias is real at this step size
    assert abs(float(x.mean()) - MEAN) < 4 * (expected / (N * D)) ** 0.5
