"""Outputs are checked before any work, written atomically, never over the inputs; the CLI
answers every expected failure with one line naming the file and the fix."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

import diffusekit as dk
from diffusekit.cli import main

from .conftest import SMALL, small_pipe


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def run(tmp_path):
    d = tmp_path / "run"
    small_pipe(0).save(d)
    return d


def test_train_out_is_checked_before_training(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**SMALL, "data": {"name": "moons", "n": 64}, "train": {"steps": 100_000}}))
    (tmp_path / "taken").write_text("x")
    t0 = time.perf_counter()
    assert main(["train", str(cfg), "--out", str(tmp_path / "taken"), "--quiet"]) == 2
    assert time.perf_counter() - t0 < 10  # refused before 100,000 steps
    assert "--out: " in _err_line(capsys)
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize("text, loc", [('{"process": "vp",', "config"), ('[1, 2]', "config")])
def test_train_config_errors_are_one_line(tmp_path, capsys, text, loc):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(text)
    assert main(["train", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) in (1, 2)
    line = _err_line(capsys)
    assert str(cfg) in line or "JSON" in line


def test_train_rejects_unknown_train_keys(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**SMALL, "data": "moons", "train": {"stepz": 3}}))
    assert main(["train", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "unknown 'train' keys ['stepz']" in _err_line(capsys)


def test_sample_output_checked_before_sampling(run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "file" / "x.npy"), "--quiet"]) == 2
    assert "--out: " in _err_line(capsys)
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "x.xyz"), "--quiet"]) == 2
    line = _err_line(capsys)
    assert "unsupported file type '.xyz'" in line and ".safetensors" in line and ".png" in line
    assert main(["sample", str(run), "--n", "8", "--sampler", '{"name": "ddim", steps: 3}', "--out",
                 str(tmp_path / "x.npy"), "--quiet"]) == 2
    line = _err_line(capsys)
    assert "--sampler: " in line and "not valid JSON" in line
    assert not (tmp_path / "x.npy").exists()


def test_png_draws_held_out_data_only_when_the_run_has_some(tmp_path, capsys):
    bare = tmp_path / "bare"
    small_pipe(0).save(bare)
    assert main(["sample", str(bare), "--n", "16", "--out", str(tmp_path / "a.png"), "--quiet"]) == 0
    assert "a scatter plot of samples" in capsys.readouterr().out
    trained = tmp_path / "trained"
    dk.train(small_pipe(0), {"name": "moons", "n": 256}, steps=2, batch_size=16, out_dir=trained, progress=False)
    assert dk.Pipeline.load(trained).metadata["data"] == {"name": "moons", "n": 256}
    assert main(["sample", str(trained), "--n", "16", "--out", str(tmp_path / "b.png"), "--quiet"]) == 0
    assert "a scatter plot of data (held out) and samples" in capsys.readouterr().out
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_sample_without_suffix_says_what_it_wrote(run, tmp_path, capsys):
    assert main(["sample", str(run), "--n", "10", "--batch-size", "4", "--out", str(tmp_path / "samples"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "in 3 shards to" in out and "manifest" in out


def test_large_n_is_chunked_and_equals_one_batch(run, tmp_path, capsys):
    pipe = dk.Pipeline.load(run)
    one = pipe.sample(50, generator=list(range(50)))
    for bs in (7, 16, 50):
        chunked = pipe.sample(50, generator=list(range(50)), batch_size=bs)
        torch.testing.assert_close(chunked, one, rtol=1e-6, atol=1e-5)  # batched GEMMs round differently
    assert main(["sample", str(run), "--n", "50", "--batch-size", "7", "--out", str(tmp_path / "x.safetensors"),
                 "--quiet"]) == 0
    from safetensors.torch import load_file

    torch.testing.assert_close(load_file(str(tmp_path / "x.safetensors"))["samples"], one, rtol=1e-6, atol=1e-5)
    with pytest.raises(dk.ConfigError, match="batch_size must be a positive integer"):
        pipe.sample(4, batch_size=0)


@pytest.mark.slow
def test_tensorrt_export_without_gpu_fails_and_keeps_model_onnx(run, capsys):
    pytest.importorskip("onnx")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: TensorRT can build")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    before = (run / "model.onnx").read_bytes()
    capsys.readouterr()
    code = main(["export", str(run), "--format", "tensorrt"])
    assert code != 0
    assert _err_line(capsys).startswith("error: ")
    assert (run / "model.onnx").read_bytes() == before
    assert not (run / "model.engine").exists()


@pytest.mark.slow
def test_cuda_without_gpu_is_a_clear_error_and_onnxruntime_falls_back(run):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(dk.ConfigError, match="no CUDA GPU is available"):
        dk.Pipeline.load(run, device="cuda")
    pytest.importorskip("onnxruntime")
    dk.export(dk.Pipeline.load(run), "onnx", run / "model.onnx")
    with pytest.warns(RuntimeWarning, match="could not be loaded"):
        ort = dk.Pipeline.load(run, backend="onnxruntime", device="cuda")
    assert ort.sample(4, generator=list(range(4))).shape == (4, 2)


# -- enhance ------------------------------------------------------------------------------------
sf = pytest.importorskip("soundfile")


@pytest.fixture
def speech_run(tmp_path):
    pipe = dk.Pipeline(process="ouve", parameterization="predictive", sampler="one-step",
                       network={"name": "ncsnpp", "preset": "custom", "nf": 4, "ch_mult": [1, 2]})
    d = tmp_path / "speech"
    pipe.save(d)
    return d


def _wav(path, seconds=0.5, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32),
             16000)


def test_enhance_never_overwrites_the_inputs(speech_run, tmp_path, capsys):
    noisy = tmp_path / "noisy"
    _wav(noisy / "a.wav")
    original = (noisy / "a.wav").read_bytes()
    for out in (noisy, noisy / "a.wav"):
        src = noisy if out == noisy else noisy / "a.wav"
        assert main(["enhance", str(src), "--run", str(speech_run), "--out", str(out)]) == 2
        assert "noisy original" in _err_line(capsys)
    assert main(["enhance", str(noisy / "a.wav"), "--run", str(speech_run), "--out", str(noisy)]) == 2
    assert "would be overwritten" in _err_line(capsys)
    assert main(["enhance", str(noisy), "--run", str(speech_run), "--out", str(noisy / "sub"), "--recursive"]) == 2
    assert "inside it" in _err_line(capsys)
    assert (noisy / "a.wav").read_bytes() == original


def test_enhance_skips_bad_files_and_reports_them(speech_run, tmp_path, capsys):
    noisy = tmp_path / "noisy"
    _wav(noisy / "a.wav", seed=1)
    _wav(noisy / "B.WAV", seed=2)
    _wav(noisy / "deeper" / "c.wav", seed=3)
    (noisy / "broken.wav").write_bytes(b"RIFF not really audio")
    sf.write(str(noisy / "empty.wav"), np.zeros(0, dtype=np.float32), 16000)
    out = tmp_path / "out"
    code = main(["enhance", str(noisy), "--run", str(speech_run), "--out", str(out), "--recursive"])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["B.WAV", "a.wav",
                                                                                      "deeper/c.wav"]
    assert "enhanced 3 file(s), skipped 0 existing, 2 failed" in captured.out
    assert "broken.wav" in captured.err and "empty.wav" in captured.err and "is empty" in captured.err


@pytest.mark.parametrize("args, match", [(["--chunk-seconds", "0.001"], "--chunk-seconds must be at least"),
                                         (["--overlap-seconds", "3"], "--overlap-seconds must be between"),
                                         (["--sampler", "{oops"], "--sampler: ")])
def test_enhance_refuses_options_that_would_hang_or_fail(speech_run, tmp_path, capsys, args, match):
    _wav(tmp_path / "a.wav")
    assert main(["enhance", str(tmp_path / "a.wav"), "--run", str(speech_run), "--out", str(tmp_path / "o.wav"),
                 *args]) == 2
    assert match in _err_line(capsys)


@pytest.mark.slow
def test_damaged_onnx_file_is_a_one_line_error(run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    data = (run / "model.onnx").read_bytes()
    (run / "model.onnx").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert main(["sample", str(run), "--n", "4", "--backend", "onnxruntime", "--out", str(tmp_path / "x.npy"),
                 "--quiet"]) == 2
    line = _err_line(capsys)
    assert "model.onnx" in line and "export it again" in line


def test_every_cli_option_has_a_help_string():
    import argparse

    import diffusekit.cli as cli

    parser = cli.build_parser()
    cli._add_plugin_commands(parser, ["--help"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, p in [("diffusekit", parser), *sub.choices.items()]:
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    assert {"enhance", "register"} <= set(sub.choices)  # plugin commands are part of --help
