"""Synthetic corpus: exact mixing SNR, noise colours, RIR decay, train / test disjointness;
espeak-ng synthesis (skipped with a reason when espeak-ng is not installed)."""

import math

import numpy as np
import pytest

from diffusekit.errors import ConfigError
from diffusekit_sgmse import data

_MISSING = data.missing_speech_requirements()
needs_espeak = pytest.mark.skipif(bool(_MISSING), reason=f"the speech corpus needs {', '.join(_MISSING)}")


def test_mix_at_snr_is_exact():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(16000).astype(np.float32)
    noise = 3 * rng.standard_normal(16000).astype(np.float32)
    for snr in (-5.0, 0.0, 15.0):
        noisy = data.mix_at_snr(clean, noise, snr)
        resid = noisy.astype(np.float64) - clean
        assert 10 * math.log10((clean.astype(np.float64) ** 2).sum() / (resid ** 2).sum()) == pytest.approx(snr, abs=1e-3)


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_colour_slopes(kind, slope):
    rng = np.random.default_rng(1)
    x = data.make_noise(kind, 2 ** 16, [], rng)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    band = (f > 50) & (f < 5000)
    fitted = np.polyfit(np.log(f[band]), np.log(p[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.1)


def test_hum_is_harmonic_and_rir_decays():
    rng = np.random.default_rng(2)
    h = data.hum(32000, rng)
    spec = np.abs(np.fft.rfft(h))
    f = np.fft.rfftfreq(32000, 1 / 16000)
    assert f[np.argmax(spec)] < 500
    rir = data.synthetic_rir(rng, rt60=0.4)
    assert rir[0] == pytest.approx(1.0) and len(rir) == int(0.4 * 16000)
    tail = rir[1:]
    early, late = np.abs(tail[: len(tail) // 4]).max(), np.abs(tail[-len(tail) // 4:]).max()
    assert late < early * 10 ** (-40 / 20)  # > 40 dB decay over the last three quarters


def test_train_test_split_by_text_and_voice():
    train, test = set(data.sentences("train")), set(data.sentences("test"))
    assert train and test and not train & test
    words = lambda ss: {w for s in ss for w in s.split()[:3]}  # subjects
    assert not ({s for s in data._SUBJECTS[-3:]} & {" ".join(x.split()[:2]) for x in train})
    assert not set(data.TRAIN_VOICES) & set(data.TEST_VOICES)
    assert words(test)
    with pytest.raises(ConfigError, match="noise type"):
        data.corpus("train", 1, noises=("jackhammer",))


@needs_espeak
def test_corpus_pairs_are_deterministic_16k_and_at_the_requested_snr():
    a = data.corpus("test", n=3, snr_min=0.0, snr_max=0.0, seed=5)
    b = data.corpus("test", n=3, snr_min=0.0, snr_max=0.0, seed=5)
    for p, q in zip(a, b):
        assert np.array_equal(p.noisy, q.noisy) and p.voice in data.TEST_VOICES
        assert len(p.clean) == len(p.noisy) and 0.5 * 16000 < len(p.clean) < 8 * 16000
        resid = p.noisy.astype(np.float64) - p.clean
        assert 10 * np.log10((p.clean.astype(np.float64) ** 2).sum() / (resid ** 2).sum()) == pytest.approx(0.0, abs=1e-3)


@needs_espeak
def test_spectrogram_dataset_shapes():
    d = data.spectrogram_dataset("test", n=2, frames=32, crops_per_pair=2, reverb=1.0)
    assert d.x.shape == d.cond.shape == (4, 256, 32)
    assert d.x.is_complex() and d.cond.abs().max() <= 0.15 * 256 ** 0.5
