"""Generic time grids: end points, monotonicity and the defining formula of each grid."""

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.timegrids import log_snr_of, sigma_of


@pytest.mark.parametrize("process", ["vp", "ve", "subvp", "edm"])
@pytest.mark.parametrize("grid", ["uniform", "quadratic", "logsnr", "karras", "edm"])
def test_grids_are_decreasing_between_the_process_ends(process, grid):
    proc = dk.create("process", process)
    t = dk.create("schedule", grid).times(proc, 12)
    assert t.dtype == torch.float64 and t.shape == (13,)
    assert float(t[0]) == pytest.approx(proc.t_max) and float(t[-1]) == pytest.approx(proc.t_min)
    assert bool((t[1:] < t[:-1]).all())


def test_each_grid_follows_its_formula():
    vp = dk.create("process", "vp")
    lam = log_snr_of(vp, dk.create("schedule", "logsnr").times(vp, 10))
    torch.testing.assert_close(lam[1:] - lam[:-1], torch.full((10,), float(lam[1] - lam[0]), dtype=torch.float64))
    sig = sigma_of(vp, dk.create("schedule", "karras", rho=7.0).times(vp, 10))
    r = sig ** (1 / 7)
    torch.testing.assert_close(r[1:] - r[:-1], torch.full((10,), float(r[1] - r[0]), dtype=torch.float64))
    t = dk.create("schedule", "quadratic").times(vp, 4)
    u = torch.linspace(1, 0, 5, dtype=torch.float64)
    torch.testing.assert_close(t, vp.t_min + (vp.t_max - vp.t_min) * u ** 2)


def test_t_start_and_errors():
    vp = dk.create("process", "vp")
    t = dk.create("schedule", "logsnr", t_start=0.5).times(vp, 5)
    assert float(t[0]) == 0.5
    with pytest.raises(ConfigError, match="t_start"):
        dk.create("schedule", "uniform", t_start=1e-4).times(vp, 5)
    with pytest.raises(ConfigError, match="steps=2"):
        dk.create("schedule", "explicit", times=[1.0, 0.5, 0.1]).times(vp, 4)
    with pytest.raises(ConfigError, match="decreasing"):
        dk.create("schedule", "explicit", times=[1.0, 0.1, 0.5]).times(vp, 2)
