"""Pipeline.save is atomic and Pipeline.load refuses what does not belong together: a full disk
or kill -9 mid-save leaves the previous run loadable (never new config + old weights, no large
temporary files), and edited configs, flipped weight bits and unknown formats are clear errors."""

from __future__ import annotations

import json
import random
import shutil
import time

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError, IntegrityError
from diffusekit.io import CONFIG_FILE, JOURNAL_FILE, STAGING_DIR, WEIGHTS_FILE

from .conftest import python_child, same_weights, small_pipe, weights


def _hidden_files(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_full_disk_mid_save_keeps_the_previous_run(tmp_path):
    run = tmp_path / "run"
    old = small_pipe(0)
    old.save(run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # a child saves a much larger pipeline over it while its files may not exceed 200 kB (EFBIG)
    child = python_child(f"""
        import torch, diffusekit as dk
        torch.manual_seed(1)
        pipe = dk.Pipeline.from_config({{"process": "vp", "parameterization": "eps",
                                         "network": {{"name": "mlp", "dim": 2, "hidden": 512, "depth": 3}}}})
        try:
            pipe.save({str(run)!r})
        except OSError as exc:
            print("save failed:", exc.errno)
            raise SystemExit(3)
        """, fsize_limit=200_000)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 3, (out, err)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # untouched, no temporary files left
    assert same_weights(weights(dk.Pipeline.load(run)), weights(old))


@pytest.mark.slow
def test_kill_9_mid_save_never_pairs_config_and_weights_of_different_saves(tmp_path):
    """A child saves two different pipelines (different networks, so config and weights differ in
    size and shape) over one run in a loop and is killed at random moments; every time, the run
    loads as exactly one of the two."""
    run = tmp_path / "run"
    ref = {}
    for k, hidden in enumerate((64, 256)):
        p = small_pipe(k, hidden=hidden)
        p.save(tmp_path / f"ref{k}")
        ref[hidden] = weights(p)
    rng = random.Random(0)
    outcomes = set()
    for trial in range(6):
        child = python_child(f"""
            import sys, diffusekit as dk
            pipes = [dk.Pipeline.load({str(tmp_path / 'ref0')!r}), dk.Pipeline.load({str(tmp_path / 'ref1')!r})]
            pipes[0].save({str(run)!r})
            print("ready", flush=True)
            k = 0
            while True:
                k += 1
                pipes[k % 2].save({str(run)!r})
            """)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        child.kill()
        child.wait()
        pipe = dk.Pipeline.load(run)  # finishes a committed save, ignores an uncommitted one
        hidden = pipe.config["network"]["hidden"]
        assert same_weights(weights(pipe), ref[hidden])
        outcomes.add(hidden)
        assert not (run / JOURNAL_FILE).exists()
    assert outcomes
    # an uncommitted save may leave its staging directory (with safetensors' own .tmpXXXXXX files)
    # until the next save, which removes it
    dk.Pipeline.load(tmp_path / "ref0").save(run)
    assert _hidden_files(run) == []


@pytest.mark.parametrize("layout", ["staging", "pending-siblings"])
def test_committed_but_interrupted_save_is_finished_at_load(tmp_path, layout):
    """State after a crash between the journal and the renames: the next load completes it.
    ``staging``: this version's layout (with a temporary file safetensors itself left inside);
    ``pending-siblings``: the ``.<name>.pending`` files that older versions wrote."""
    run, new = tmp_path / "run", tmp_path / "new"
    small_pipe(0).save(run)
    newer = small_pipe(1, hidden=32)
    newer.save(new)
    if layout == "staging":
        (run / STAGING_DIR).mkdir()
        (run / STAGING_DIR / ".tmpAb12Cd").write_bytes(b"\0" * 100)
        staged = {name: f"{STAGING_DIR}/{name}" for name in (CONFIG_FILE, WEIGHTS_FILE)}
    else:
        staged = {name: f".{name}.pending" for name in (CONFIG_FILE, WEIGHTS_FILE)}
    for name, rel in staged.items():
        shutil.copy(new / name, run / rel)
    (run / JOURNAL_FILE).write_text(json.dumps(staged))
    loaded = dk.Pipeline.load(run)
    assert loaded.config["network"]["hidden"] == 32 and same_weights(weights(loaded), weights(newer))
    assert _hidden_files(run) == []


def test_uncommitted_pending_files_are_ignored(tmp_path):
    run = tmp_path / "run"
    old = small_pipe(0)
    old.save(run)
    (run / STAGING_DIR).mkdir()  # a save killed before its journal, inside safetensors' write
    (run / STAGING_DIR / WEIGHTS_FILE).write_bytes(b"\0" * 1000)
    (run / STAGING_DIR / ".tmpAb12Cd").write_bytes(b"\0" * 1000)
    (run / f".{WEIGHTS_FILE}.pending").write_bytes(b"\0" * 1000)  # the layout of older versions
    assert same_weights(weights(dk.Pipeline.load(run)), weights(old))
    old.save(run)  # the next save cleans it up
    assert _hidden_files(run) == []


def test_edited_config_is_refused_with_the_differences(tmp_path):
    run = tmp_path / "run"
    small_pipe(0).save(run)
    doc = json.loads((run / CONFIG_FILE).read_text())
    for key, value in [("process", {"name": "vp", "beta_max": 25.0}), ("parameterization", {"name": "v"})]:
        edited = json.loads(json.dumps(doc))
        edited["pipeline"][key] = value
        (run / CONFIG_FILE).write_text(json.dumps(edited))
        with pytest.raises(ConfigError, match="was edited after the weights were saved") as info:
            dk.Pipeline.load(run)
        assert key in str(info.value)
    # the sampler is a sampling-time choice: editing it is fine
    edited = json.loads(json.dumps(doc))
    edited["pipeline"]["sampler"] = {"name": "ddim", "steps": 7}
    (run / CONFIG_FILE).write_text(json.dumps(edited))
    assert dk.Pipeline.load(run).sampler.steps == 7


def test_flipped_weight_bit_is_detected(tmp_path):
    run = tmp_path / "run"
    small_pipe(0).save(run)
    data = bytearray((run / WEIGHTS_FILE).read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes: the file still parses
    (run / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        dk.Pipeline.load(run)


@pytest.mark.parametrize("fmt, match", [(99, "newer diffusekit"), ("2", "not a diffusekit save format"),
                                        (0, "not a diffusekit save format")])
def test_format_version_is_checked(tmp_path, fmt, match):
    run = tmp_path / "run"
    small_pipe(0).save(run)
    doc = json.loads((run / CONFIG_FILE).read_text())
    doc["format"] = fmt
    (run / CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        dk.Pipeline.load(run)


def test_format_1_runs_still_load(tmp_path):
    """Runs saved before the hashes (format 1: no 'files', no config in the weights) load."""
    from safetensors.torch import save_file

    from diffusekit.io import state_tensors

    run = tmp_path / "run"
    pipe = small_pipe(0)
    pipe.save(run)
    doc = json.loads((run / CONFIG_FILE).read_text())
    doc["format"] = 1
    del doc["files"]
    (run / CONFIG_FILE).write_text(json.dumps(doc))
    save_file(state_tensors(pipe), str(run / WEIGHTS_FILE), metadata={"format": "1"})
    assert same_weights(weights(dk.Pipeline.load(run)), weights(pipe))


@pytest.mark.parametrize("damage", ["config-json", "weights-truncated", "weights-missing"])
def test_damaged_runs_are_one_line_cli_errors(tmp_path, capsys, damage):
    from diffusekit.cli import main

    run = tmp_path / "run"
    small_pipe(0).save(run)
    if damage == "config-json":
        (run / CONFIG_FILE).write_text('{"format": 2, "pipeline": ')
    elif damage == "weights-truncated":
        data = (run / WEIGHTS_FILE).read_bytes()
        (run / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    else:
        (run / WEIGHTS_FILE).unlink()
    code = main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "x.npy"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert str(run) in err
    assert not (tmp_path / "x.npy").exists()


def test_provenance_change_warns_at_load(tmp_path):
    run = tmp_path / "run"
    small_pipe(0).save(run)
    doc = json.loads((run / CONFIG_FILE).read_text())
    doc["provenance"]["process"]["plugin"] = "someone-else"
    (run / CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="was saved from plugin 'someone-else'"):
        dk.Pipeline.load(run)


def test_save_refuses_a_file_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        small_pipe(0).save(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"
    assert torch.is_grad_enabled()
