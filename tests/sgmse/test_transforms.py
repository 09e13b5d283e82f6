"""Spectral front end: exact round trips, STFT settings, padding, normalisation."""


import pytest
import torch

from diffusekit_sgmse.transforms import SpecTransform


def test_compress_decompress_round_trip():
    tf = SpecTransform()
    g = torch.Generator().manual_seed(0)
    X = torch.complex(torch.randn(3, 256, 40, generator=g, dtype=torch.float64),
                      torch.randn(3, 256, 40, generator=g, dtype=torch.float64)) * 10
    C = tf.compress(X)
    assert torch.allclose(C.abs(), 0.15 * X.abs() ** 0.5)
    assert torch.allclose(torch.angle(C), torch.angle(X))
    assert torch.allclose(tf.decompress(C), X, atol=1e-10)
    assert torch.allclose(tf.compress(tf.decompress(C)), C, atol=1e-12)


def test_stft_settings_and_round_trip():
    tf = SpecTransform()
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    S = tf.stft(wav)
    assert S.shape == (2, 256, 16000 // 128 + 1)
    # periodic Hann window, centred frames: frame k of a unit impulse at sample 128 k is w[255]
    imp = torch.zeros(1, 4096, dtype=torch.float64)
    imp[0, 128 * 5] = 1.0
    col = tf.stft(imp)[0, :, 5]
    w = torch.hann_window(510, periodic=True, dtype=torch.float64)
    assert torch.allclose(col.abs(), torch.full_like(col.abs(), float(w[255])), atol=1e-12)
    assert torch.allclose(tf.istft(S, 16000), wav, atol=1e-10)
    assert torch.allclose(tf.inverse(tf.forward(wav), 16000), wav, atol=1e-9)


def test_analyse_synthesise_round_trip_with_padding_and_norm():
    tf = SpecTransform()
    g = torch.Generator().manual_seed(2)
    noisy = torch.randn(12345, generator=g) * 0.3
    clean = torch.randn(12345, generator=g) * 0.1
    Y, X, norm, L = tf.analyse(noisy, clean)
    assert Y.shape[-1] % 64 == 0 and Y.shape == X.shape and Y.shape[-2] == 256
    assert float(norm) == pytest.approx(float(noisy.abs().max()))
    assert torch.allclose(tf.synthesise(Y, norm, L), noisy, atol=1e-5)
    assert torch.allclose(tf.synthesise(X, norm, L), clean, atol=1e-5)


@pytest.mark.parametrize("length", [1, 127, 128, 8063, 8064, 8065, 40000])
def test_padded_length_gives_multiple_of_64_frames(length):
    tf = SpecTransform()
    n = tf.padded_length(length)
    assert n >= length and tf.frames_for(n) % 64 == 0
    assert tf.frames_for(n) - tf.frames_for(length) <= 64
    sig = torch.randn(length, dtype=torch.float64)
    assert torch.allclose(tf.synthesise(tf.analyse(sig)[0], torch.tensor(1.0, dtype=torch.float64) * sig.abs().max(), length), sig, atol=1e-9)
