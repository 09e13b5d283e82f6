"""`diffusekit sample RUN --out DIR`, `diffusekit evaluate` and `diffusekit enhance --resume`
in one process; under torchrun, and a run killed by SIGKILL, in the slow tests at the end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dist_cases import torchrun
from safetensors.torch import save_file

import diffusekit as dk
from diffusekit.cli import main
from diffusekit.testing import mmd

dist = dk.distributed


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A saved pipeline with a seeded, untrained MLP."""
    torch.manual_seed(0)
    pipe = dk.Pipeline.from_config({"process": "vp", "parameterization": "eps",
                                    "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                                    "sampler": {"name": "ddim", "steps": 3}})
    run = tmp_path_factory.mktemp("run") / "run"
    pipe.save(run)
    return run


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("samples-*.safetensors"))}


def test_sample_to_a_directory_writes_shards_and_resumes(run_dir, tmp_path, capsys):
    out = tmp_path / "samples"
    code, stdout, err = _run(capsys, "sample", str(run_dir), "--n", "5", "--batch-size", "2", "--seed", "3",
                             "--out", str(out), "--quiet")
    assert code == 0, err
    assert "wrote 5 samples in 3 shards" in stdout and "(3 drawn, 0 reused; 1 process(es)" in stdout
    ref = tmp_path / "api"
    dist.sample(dk.Pipeline.load(run_dir), 5, ref, batch_size=2, seed=3)
    assert shard_bytes(out) == shard_bytes(ref)
    assert torch.equal(dist.load_samples(out), dist.load_samples(ref))
    code, stdout, _ = _run(capsys, "sample", str(run_dir), "--n", "5", "--batch-size", "2", "--seed", "3",
                           "--out", str(out), "--quiet")
    assert code == 0 and "(0 drawn, 3 reused" in stdout
    # a trailing separator or an existing directory also mean "directory"
    code, _, err = _run(capsys, "sample", str(run_dir), "--n", "3", "--out", str(tmp_path / "d2") + "/", "--quiet")
    assert code == 0, err
    assert dist.read_manifest(tmp_path / "d2")["batch_size"] == 64
    code, _, err = _run(capsys, "sample", str(run_dir), "--n", "5", "--batch-size", "3", "--seed", "3",
                        "--out", str(out))
    assert code == 2 and "batch_size = 2, this run has 3); pass --batch-size 2" in err


def test_sample_to_a_file_matches_the_sample_directory_and_chunks(run_dir, tmp_path, capsys):
    """A file holds the same samples as a sample directory (sample i uses seed + i), whatever
    --batch-size bounds the memory with."""
    target = tmp_path / "x.safetensors"
    code, stdout, err = _run(capsys, "sample", str(run_dir), "--n", "4", "--out", str(target), "--quiet")
    assert code == 0, err
    assert "wrote 4 samples (3 NFE)" in stdout
    from safetensors.torch import load_file

    again = dk.Pipeline.load(run_dir).sample(4, generator=[0, 1, 2, 3])
    assert torch.equal(load_file(str(target))["samples"], again)
    shards = tmp_path / "shards"
    dist.sample(dk.Pipeline.load(run_dir), 4, shards, batch_size=4, seed=0)
    assert torch.equal(dist.load_samples(shards), again)
    code, _, err = _run(capsys, "sample", str(run_dir), "--n", "4", "--batch-size", "2", "--out", str(target),
                        "--quiet")
    assert code == 0, err
    torch.testing.assert_close(load_file(str(target))["samples"], again, rtol=1e-6, atol=1e-5)


def test_evaluate_command(run_dir, tmp_path, capsys):
    samples = tmp_path / "s"
    dist.sample(dk.Pipeline.load(run_dir), 30, samples, batch_size=8)
    x = dist.load_samples(samples)
    ref = torch.randn(25, 2, generator=torch.Generator().manual_seed(1))
    save_file({"data": ref}, str(tmp_path / "ref.safetensors"))
    code, stdout, err = _run(capsys, "evaluate", str(samples), "--metric", "mmd", "--reference",
                             str(tmp_path / "ref.safetensors"), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["world_size"] == 1 and (res["n"], res["m"]) == (30, 25)
    assert math.isclose(res["value"], mmd(x, ref), rel_tol=1e-12)
    spec = json.dumps({"name": "mmd", "bandwidths": [0.5]})
    code, stdout, err = _run(capsys, "evaluate", str(samples), "--metric", spec, "--reference",
                             '{"name": "moons", "n": 40}')
    assert code == 0, err
    moons = dk.train.as_example(dk.create("dataset", {"name": "moons", "n": 40})).x
    assert stdout.startswith(f"mmd: {mmd(x, moons, bandwidths=(0.5,)):.6g}")
    code, _, err = _run(capsys, "evaluate", str(samples), "--metric", "mmd", "--reference", "nope")
    assert code == 2 and "reference: 'nope' not found" in err
    code, _, err = _run(capsys, "evaluate", str(samples), "--metric", "mmd", "--reference",
                        str(tmp_path / "ref.safetensors"), "--bins", "0", "1", "4")
    assert code == 2 and "bins apply to per-item metrics" in err


def test_evaluate_per_item_metric_over_wav_directories(tmp_path, capsys):
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(0)
    est, ref = tmp_path / "est", tmp_path / "ref"
    est.mkdir()
    ref.mkdir()
    values = []
    for k in range(4):
        clean = (0.1 * rng.standard_normal(4000)).astype(np.float32)
        noisy = (clean + 0.05 * rng.standard_normal(4000)).astype(np.float32)
        sf.write(str(ref / f"u{k}.wav"), clean, 16000)
        sf.write(str(est / f"u{k}.wav"), noisy, 16000)
        from diffusekit_sgmse.metrics import si_sdr

        values.append(si_sdr(sf.read(str(est / f"u{k}.wav"), dtype="float32")[0],
                             sf.read(str(ref / f"u{k}.wav"), dtype="float32")[0]))
    (ref / "extra.wav").write_bytes((ref / "u0.wav").read_bytes())  # unmatched references are ignored
    code, stdout, err = _run(capsys, "evaluate", str(est), "--metric", "si-sdr", "--reference", str(ref),
                             "--bins", "0", "20", "4", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["count"] == 4 and math.isclose(res["mean"], float(np.mean(values)), rel_tol=1e-12)
    assert math.isclose(res["std"], float(np.std(values, ddof=1)), rel_tol=1e-9)
    assert sum(res["histogram"]["counts"]) + res["histogram"]["below"] + res["histogram"]["above"] == 4
    (ref / "u3.wav").unlink()
    code, _, err = _run(capsys, "evaluate", str(est), "--metric", "si-sdr", "--reference", str(ref))
    assert code == 2 and "no reference of the same name" in err and "u3.wav" in err


@pytest.fixture
def identity_run(tmp_path):
    """A predictive SGMSE run whose zero network is the identity (as tests/sgmse uses)."""
    pytest.importorskip("soundfile")
    pipe = dk.Pipeline(process="ouve", parameterization="predictive", sampler="one-step",
                       network={"name": "ncsnpp", "preset": "custom", "nf": 4, "ch_mult": [1, 2]})
    run = tmp_path / "run"
    pipe.save(run)
    return run


def _noisy_dir(path: Path, n: int = 3) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(1)
    path.mkdir()
    for k in range(n):
        sf.write(str(path / f"u{k}.wav"), (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    return path


def test_enhance_resume_skips_finished_outputs(identity_run, tmp_path, capsys):
    noisy = _noisy_dir(tmp_path / "noisy")
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "enhance", str(noisy), "--run", str(identity_run), "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["u0.wav", "u1.wav", "u2.wav"]  # no temporary files left
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "u1.wav").unlink()
    code, stdout, err = _run(capsys, "enhance", str(noisy), "--run", str(identity_run), "--out", str(out),
                             "--resume")
    assert code == 0, err
    assert stdout.count(" -> ") == 1 and "u1.wav" in stdout and "skipped 2 existing" in stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


# ---------------------------------------------------------------------------------------------
# slow: torchrun and a killed process
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_under_torchrun(run_dir, identity_run, tmp_path):
    # "--" ends torchrun's own options: it would read "--n" as an ambiguous abbreviation of --nnodes
    out = tmp_path / "samples"
    torchrun(2, "-m", "diffusekit", "--", "sample", str(run_dir), "--n", "9", "--batch-size", "2", "--seed", "5",
             "--out", str(out), "--quiet")
    ref = tmp_path / "single"
    dist.sample(dk.Pipeline.load(run_dir), 9, ref, batch_size=2, seed=5)
    assert shard_bytes(out) == shard_bytes(ref) and dist.read_manifest(out)["world_size"] == 2

    reference = torch.randn(12, 2, generator=torch.Generator().manual_seed(2))
    save_file({"data": reference}, str(tmp_path / "ref.safetensors"))
    res = torchrun(3, "-m", "diffusekit", "--", "evaluate", str(out), "--metric", "mmd", "--reference",
                   str(tmp_path / "ref.safetensors"), "--json")
    got = json.loads(res.stdout)  # only rank 0 prints
    assert got["world_size"] == 3
    assert math.isclose(got["value"], mmd(dist.load_samples(ref), reference), rel_tol=1e-12)

    noisy = _noisy_dir(tmp_path / "noisy")
    res = torchrun(2, "-m", "diffusekit", "--", "enhance", str(noisy), "--run", str(identity_run), "--out",
                   str(tmp_path / "e2"))
    assert "[rank 0/2]" in res.stdout and "[rank 1/2]" in res.stdout and "enhanced 3 file(s)" in res.stdout
    assert main(["enhance", str(noisy), "--run", str(identity_run), "--out", str(tmp_path / "e1")]) == 0
    for name in ("u0.wav", "u1.wav", "u2.wav"):
        assert (tmp_path / "e2" / name).read_bytes() == (tmp_path / "e1" / name).read_bytes()


KILLER = """
import os, signal, sys, torch
import diffusekit as dk
torch.set_num_threads(1)
pipe = dk.Pipeline.load(sys.argv[1])
calls = [0]
def hook(module, args, output):  # SIGKILL in the middle of the second batch (after shard 0 is on disk)
    calls[0] += 1
    if calls[0] == 5:
        os.kill(os.getpid(), signal.SIGKILL)
pipe.network.register_forward_hook(hook)
dk.distributed.sample(pipe, 7, sys.argv[2], batch_size=2, seed=9)
"""


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_bytes(run_dir, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(run_dir), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed by SIGKILL, not finished
    assert sorted(p.name for p in out.iterdir()) == ["samples-00000-of-00004.safetensors"]
    report = dist.sample(dk.Pipeline.load(run_dir), 7, out, batch_size=2, seed=9)
    assert (report.drawn, report.skipped) == (3, 1)
    full = tmp_path / "full"
    dist.sample(dk.Pipeline.load(run_dir), 7, full, batch_size=2, seed=9)
    assert shard_bytes(out) == shard_bytes(full)
    assert dist.read_manifest(out)["shards"] == dist.read_manifest(full)["shards"]


@pytest.mark.parametrize("fails", [False, True])
def test_cli_destroys_the_process_group_it_ran_under(tmp_path, capsys, fails):
    """Leaving gloo's process group for the interpreter to tear down aborted one rank in about
    one run in three (``terminate called without an active exception``) after the work was done:
    every command, failed or not, ends with the group destroyed."""
    import torch.distributed as tdist

    tdist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        save_file({"data": torch.randn(6, 2, generator=torch.Generator().manual_seed(0))}, str(tmp_path / "s.safetensors"))
        save_file({"data": torch.randn(8, 2, generator=torch.Generator().manual_seed(1))}, str(tmp_path / "r.safetensors"))
        ref = "missing.safetensors" if fails else "r.safetensors"
        code, _, err = _run(capsys, "evaluate", str(tmp_path / "s.safetensors"), "--metric", "mmd",
                            "--reference", str(tmp_path / ref))
        assert (code != 0) == fails, err
        assert not tdist.is_initialized()
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()
