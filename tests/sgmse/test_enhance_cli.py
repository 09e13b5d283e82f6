"""Enhancement path end to end: a predictive run whose network outputs zero is the identity
(x0_hat = y), so chunked streaming through STFT -> sampler -> iSTFT must return the input."""

import numpy as np
import pytest
import torch

import diffusekit as dk
from diffusekit.cli import main
from diffusekit_sgmse.enhance import enhance_waveform

sf = pytest.importorskip("soundfile", reason="enhance reads and writes WAV files with soundfile", exc_type=ImportError)


@pytest.fixture
def identity_run(tmp_path):
    pipe = dk.Pipeline(process="ouve", parameterization="predictive", sampler="one-step",
                       network={"name": "ncsnpp", "preset": "custom", "nf": 4, "ch_mult": [1, 2]})
    run = tmp_path / "run"
    pipe.save(run)
    return run, pipe


def test_streaming_in_overlapping_chunks_is_exact_for_the_identity(identity_run):
    _, pipe = identity_run
    rng = np.random.default_rng(0)
    wav = torch.from_numpy(rng.standard_normal(16000 * 5).astype(np.float32)) * 0.2
    out = enhance_waveform(pipe, wav, chunk_seconds=1.5, overlap_seconds=0.25)
    assert out.shape == wav.shape
    assert torch.allclose(out, wav, atol=1e-4)
    short = enhance_waveform(pipe, wav[:5000])
    assert torch.allclose(short, wav[:5000], atol=1e-4)


def test_enhance_command_file_and_directory(identity_run, tmp_path, capsys):
    run, _ = identity_run
    rng = np.random.default_rng(1)
    noisy_dir = tmp_path / "noisy"
    noisy_dir.mkdir()
    for k in range(2):
        sf.write(str(noisy_dir / f"u{k}.wav"), (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32), 16000)
    assert main(["enhance", str(noisy_dir / "u0.wav"), "--run", str(run), "--out", str(tmp_path / "e.wav")]) == 0
    x, sr = sf.read(str(tmp_path / "e.wav"), dtype="float32")
    ref, _ = sf.read(str(noisy_dir / "u0.wav"), dtype="float32")
    assert sr == 16000 and np.allclose(x, ref, atol=1e-4)
    assert main(["enhance", str(noisy_dir), "--run", str(run), "--out", str(tmp_path / "out"),
                 "--chunk-seconds", "1.0", "--overlap-seconds", "0.2"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["u0.wav", "u1.wav"]
    assert torch.is_grad_enabled()  # the in-process command leaves autograd as it found it
    assert main(["enhance", str(tmp_path / "missing.wav"), "--run", str(run), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_recipe_builds_and_sample_without_condition_names_the_fix():
    cfg = dk.create("recipe", "sgmse")
    assert cfg["data"]["name"] == "sgmse-synthetic" and "train" in cfg
    pipe = dk.Pipeline.from_config({k: v for k, v in cfg.items() if k not in ("data", "train")},
                                   sample_shape=(256, 64))
    with pytest.raises(dk.ConfigError, match="noisy spectrogram"):
        pipe.sample(1)
    assert dk.create("recipe", "sgmse") is not cfg  # a fresh dict each time (cmd_train pops keys)
