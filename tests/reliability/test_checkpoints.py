"""Training checkpoints: the last K verified checkpoints are kept, nothing non-finite is ever
written, a kill -9 mid-checkpoint resumes exactly, damaged checkpoints are skipped, and resume
refuses a changed config, changed data or a bogus step instead of training silently."""

from __future__ import annotations

import json
import math
import random
import time

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError, NonFiniteError
from diffusekit.train import CHECKPOINT_DIR, latest_checkpoint

from .conftest import SMALL, python_child, same_weights, small_pipe, weights

KW = dict(steps=12, batch_size=32, lr=1e-2, ema=0.9, seed=3, checkpoint_every=2, progress=False)


def _ckpts(run):
    return sorted(p.name for p in (run / CHECKPOINT_DIR).iterdir() if p.name.startswith("step-"))


def _all_checkpoint_tensors_finite(run) -> bool:
    from safetensors.torch import load_file

    for p in (run / CHECKPOINT_DIR).glob("step-*"):
        for v in load_file(str(p / "state.safetensors")).values():
            if v.is_floating_point() and not torch.isfinite(v).all():
                return False
    return True


def test_keeps_the_newest_k_verified_checkpoints(tmp_path, moons):
    dk.train(small_pipe(0), moons, out_dir=tmp_path, keep_checkpoints=2, **KW)
    assert _ckpts(tmp_path) == ["step-00000010", "step-00000012"]
    manifest = json.loads((latest_checkpoint(tmp_path) / "manifest.json").read_text())
    assert set(manifest["files"]) == {"state.safetensors", "state.json", "rng_rank0.safetensors"}


def test_nan_gradient_with_finite_loss_is_never_applied_or_checkpointed(tmp_path, moons):
    pipe = small_pipe(0)
    calls = {"n": 0}

    def poison(grad):  # fault injection: the 7th backward pass yields a NaN gradient
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == 7 else grad

    first = next(pipe.network.parameters())
    first.register_hook(poison)
    with pytest.raises(NonFiniteError, match="gradient norm became nan at step 6; the weights were not updated; "
                                             "the last good checkpoint is") as info:
        dk.train(pipe, moons, out_dir=tmp_path, **{**KW, "ema": None})
    assert info.value.step == 6
    assert all(torch.isfinite(v).all() for v in pipe.model.state_dict().values())
    assert _ckpts(tmp_path)[-1] == "step-00000006" and _all_checkpoint_tensors_finite(tmp_path)
    # the fault is gone: resume continues from step 6 and finishes
    resumed = dk.train(small_pipe(5), moons, out_dir=tmp_path, resume=True, **{**KW, "ema": None})
    assert resumed.resumed_from == 6 and resumed.steps == 12


def test_diverging_lr_stops_with_finite_checkpoints_only(tmp_path, moons):
    with pytest.raises(NonFiniteError):
        dk.train(small_pipe(0), moons, out_dir=tmp_path, **{**KW, "lr": 1e12, "grad_clip": None, "steps": 200,
                                                            "checkpoint_every": 1, "ema": None})
    assert _all_checkpoint_tensors_finite(tmp_path)


def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, moons):
    dk.train(small_pipe(0), moons, out_dir=tmp_path, stop_after=6, **KW)
    newest = latest_checkpoint(tmp_path)
    assert newest.name == "step-00000006"
    (newest / "state.json").write_text('{"step": 6, "losses": [')  # a partial write
    with pytest.warns(UserWarning, match="step-00000006: state.json does not match its sha256"):
        res = dk.train(small_pipe(1), moons, out_dir=tmp_path, resume=True, **KW)
    assert res.resumed_from == 4


def test_bogus_step_is_detected(tmp_path, moons):
    dk.train(small_pipe(0), moons, out_dir=tmp_path, stop_after=4, **KW)
    for p in (tmp_path / CHECKPOINT_DIR).glob("step-*"):
        meta = json.loads((p / "state.json").read_text())
        meta["step"] = 10_000
        (p / "state.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="no usable checkpoint .*does not match its sha256"):
        dk.train(small_pipe(0), moons, out_dir=tmp_path, resume=True, **KW)


def test_incomplete_checkpoint_directory_is_ignored(tmp_path, moons):
    """A crash between the weights and state.json leaves a hidden .tmp directory, never a
    checkpoint: resume uses the newest complete one."""
    dk.train(small_pipe(0), moons, out_dir=tmp_path, stop_after=4, **KW)
    partial = tmp_path / CHECKPOINT_DIR / ".tmp-step-00000006"
    partial.mkdir()
    (partial / "state.safetensors").write_bytes(b"\0" * 100)
    res = dk.train(small_pipe(1), moons, out_dir=tmp_path, resume=True, **KW)
    assert res.resumed_from == 4 and not partial.exists()  # rewritten at step 6 and renamed


def test_resume_verifies_config_and_data(tmp_path, moons):
    dk.train(small_pipe(0), moons, out_dir=tmp_path, stop_after=4, **KW)
    with pytest.raises(ConfigError, match=r"the pipeline differs from the checkpoint's \(network.hidden: saved 16, "
                                          r"now 32\)"):
        dk.train(small_pipe(0, hidden=32), moons, out_dir=tmp_path, resume=True, **KW)
    other = dk.Pipeline.from_config({**small_pipe(0).config, "process": {"name": "vp", "beta_max": 25.0}})
    with pytest.raises(ConfigError, match="process.beta_max"):
        dk.train(other, moons, out_dir=tmp_path, resume=True, **KW)
    with pytest.raises(ConfigError, match=r"the training data differs from the checkpoint's \(values"):
        dk.train(small_pipe(0), moons + 0.01, out_dir=tmp_path, resume=True, **KW)
    with pytest.raises(ConfigError, match=r"training data differs .*\(rows"):
        dk.train(small_pipe(0), moons[:100], out_dir=tmp_path, resume=True, **KW)
    with pytest.raises(ConfigError, match="is at step 4, beyond steps=3"):
        dk.train(small_pipe(0), moons, out_dir=tmp_path, resume=True, **{**KW, "steps": 3})
    # a different sampler does not change what the weights mean: resuming is fine
    res = dk.train(dk.Pipeline.from_config({**small_pipe(0).config, "sampler": {"name": "ddim", "steps": 9}}),
                   moons, out_dir=tmp_path, resume=True, **KW)
    assert res.resumed_from == 4


def test_no_silent_restart_and_no_silent_overwrite(tmp_path, moons):
    finished = tmp_path / "finished"
    dk.train(small_pipe(0), moons, out_dir=finished, **{**KW, "checkpoint_every": 0})
    with pytest.raises(ConfigError, match="holds a saved run but no checkpoint, so there is nothing to resume"):
        dk.train(small_pipe(0), moons, out_dir=finished, resume=True, **KW)
    part = tmp_path / "part"
    dk.train(small_pipe(0), moons, out_dir=part, stop_after=4, **KW)
    with pytest.raises(ConfigError, match=r"has checkpoints of an earlier run \(newest: step-00000004\); pass "
                                          r"resume=True"):
        dk.train(small_pipe(0), moons, out_dir=part, **KW)
    fresh = dk.train(small_pipe(0), moons, out_dir=tmp_path / "new", resume=True, **KW)  # nothing yet: step 0
    assert fresh.resumed_from == 0 and fresh.steps == 12


def test_output_directory_is_checked_before_training(tmp_path, moons):
    (tmp_path / "file").write_text("keep me")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="train.out_dir"):
            dk.train(small_pipe(0), moons, out_dir=bad, **{**KW, "steps": 10_000})
        assert time.perf_counter() - t0 < 5  # refused before the 10,000 steps
    assert (tmp_path / "file").read_text() == "keep me"


@pytest.mark.slow
def test_kill_9_mid_checkpoint_resumes_exactly(tmp_path, moons):
    """A child checkpoints every step and is killed at random moments; each time, resume
    continues from the newest complete checkpoint, and the finished run is bit-identical to an
    uninterrupted one."""
    kw = dict(steps=60, batch_size=64, lr=1e-2, ema=0.9, seed=3, checkpoint_every=1, progress=False)
    full = small_pipe(0, hidden=256, depth=3)
    ref = dk.train(full, moons, out_dir=tmp_path / "full", **kw)
    run = tmp_path / "killed"
    rng = random.Random(1)
    for trial in range(3):
        child = python_child(f"""
            import torch, diffusekit as dk
            torch.manual_seed(0)
            pipe = dk.Pipeline.from_config({{"process": "vp", "parameterization": "eps",
                "sampler": {{"name": "ddim", "steps": 4}},
                "network": {{"name": "mlp", "dim": 2, "hidden": 256, "depth": 3}}}})
            data = dk.create("dataset", {{"name": "moons", "n": 256}})
            print("ready", flush=True)
            dk.train(pipe, data, out_dir={str(run)!r}, resume=True, **{kw!r})
            """)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        start = len(_ckpts(run)) if (run / CHECKPOINT_DIR).exists() else 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:  # kill while it is checkpointing
            if (run / CHECKPOINT_DIR).exists() and len(_ckpts(run)) >= min(start + 2, 3):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        child.kill()
        child.wait()
    resumed = small_pipe(7, hidden=256, depth=3)
    res = dk.train(resumed, moons, out_dir=run, resume=True, **kw)
    assert res.steps == 60
    assert res.losses == ref.losses
    a, b = weights(full), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert math.isfinite(res.final_loss)


def test_checkpoint_weights_load_for_evaluation(tmp_path, moons):
    """The last checkpoint's EMA weights are the weights a finished run saves; raw weights and
    a checkpoint of another config are told apart; a damaged checkpoint is refused."""
    from diffusekit.train import checkpoints, load_checkpoint_weights

    pipe = small_pipe(0)
    dk.train(pipe, moons, out_dir=tmp_path, keep_checkpoints=10, **KW)
    found = checkpoints(tmp_path)
    assert [p.name for p in found] == [f"step-{s:08d}" for s in range(2, 13, 2)]
    probe = small_pipe(1)
    assert load_checkpoint_weights(found[-1], probe) == 12
    assert same_weights(weights(probe), weights(pipe))  # EMA weights == what the finished run ended with
    load_checkpoint_weights(found[-1], probe, ema=False)
    assert not same_weights(weights(probe), weights(pipe))
    assert load_checkpoint_weights(found[0], probe) == 2
    other = dk.Pipeline.from_config({**pipe.config, "network": {**SMALL["network"], "hidden": 8}})
    with pytest.raises(ConfigError, match="another pipeline config"):
        load_checkpoint_weights(found[-1], other)
    (found[0] / "state.safetensors").write_bytes(b"broken")
    with pytest.raises(ConfigError, match="does not verify: state.safetensors does not match"):
        load_checkpoint_weights(found[0], probe)
