"""SI-SDR against its closed form; PESQ / ESTOI sanity on identical and degraded signals."""

import math

import numpy as np
import pytest

from diffusekit_sgmse.metrics import estoi, pesq_wb, si_sdr


def _signal(n=32000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)) + 0.01 * rng.standard_normal(n)


def test_si_sdr_closed_form_and_scale_invariance():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(8000)
    s -= s.mean()
    e = rng.standard_normal(8000)
    e -= e.mean()
    e -= np.dot(e, s) / np.dot(s, s) * s  # orthogonal to s: s_target = s exactly
    for snr_db in (-5.0, 0.0, 12.0):
        g = math.sqrt(np.dot(s, s) / np.dot(e, e) / 10 ** (snr_db / 10))
        est = s + g * e
        assert si_sdr(est, s) == pytest.approx(snr_db, abs=1e-6)
        assert si_sdr(3.7 * est, s) == pytest.approx(snr_db, abs=1e-6)
        assert si_sdr(est + 0.25, s) == pytest.approx(snr_db, abs=1e-6)  # mean removed
    with pytest.raises(ValueError, match="shape"):
        si_sdr(s[:10], s)


def test_pesq_and_estoi_rank_clean_above_noisy():
    pytest.importorskip("pesq", reason="wide-band PESQ needs the pesq package (pip install diffusekit[audio])",
                        exc_type=ImportError)
    pytest.importorskip("pystoi", reason="ESTOI needs the pystoi package (pip install diffusekit[audio])",
                        exc_type=ImportError)
    clean = _signal()
    noisy = clean + 0.3 * np.random.default_rng(2).standard_normal(clean.shape)
    assert pesq_wb(clean, clean) > 4.5
    assert estoi(clean, clean) == pytest.approx(1.0, abs=1e-6)
    assert pesq_wb(noisy, clean) < pesq_wb(clean, clean) - 1.0
    assert estoi(noisy, clean) < 0.95
