"""The ``diffusekit`` command line: every built-in command, plugin-provided subcommands, and
how a broken plugin shows up (listed with its error; fatal only in strict mode)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
import torch

import diffusekit as dk
from diffusekit import cli

from core_plugin_fixtures import BROKEN_PLUGIN, make_dist


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _builtin_plugins() -> list[str]:
    return [ep.name for ep in metadata.distribution("diffusekit").entry_points if ep.group == "diffusekit"]


def test_plugins_json_lists_every_builtin(capsys):
    code, out, _ = _run(capsys, "plugins", "--json")
    assert code == 0
    infos = {p["name"]: p for p in json.loads(out)}
    for name in _builtin_plugins():
        p = infos[name]
        assert p["status"] == "loaded", (name, p["error"])
        assert p["version"] == metadata.version("diffusekit") and p["error"] is None
        assert p["components"], name
        assert p["seconds"] >= 0.0
    assert {"subvp", "ve", "vp"} <= set(infos["sde"]["components"]["process"])
    code, out, _ = _run(capsys, "plugins")
    assert code == 0 and "sde" in out and "loaded" in out


def test_components_info_and_help(capsys):
    code, out, _ = _run(capsys, "components", "process")
    assert code == 0 and "vp" in out and "sde" in out
    code, out, _ = _run(capsys, "components", "--json")
    kinds = {c["kind"] for c in json.loads(out)}
    assert {"process", "sampler", "schedule"} <= kinds
    code, out, _ = _run(capsys, "info", "vp")
    doc = json.loads(out)[0]
    assert doc["kind"] == "process" and doc["plugin"] == "sde" and "beta_max" in doc["schema"]["properties"]
    code, _, err = _run(capsys, "info", "euler-maruyam")
    assert code == 2 and "did you mean" in err and "euler-maruyama" in err
    code, _, err = _run(capsys, "components", "samplerz")
    assert code == 2 and "did you mean 'sampler'" in err
    code, out, _ = _run(capsys)
    assert code == 0 and "usage" in out.lower()


def test_train_sample_and_export_commands(tmp_path, capsys):
    config = {"process": "vp", "parameterization": "eps",
              "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
              "sampler": {"name": "template-ddim", "steps": 5},
              "data": {"name": "moons", "n": 256}, "train": {"steps": 10, "batch_size": 32}}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    run = tmp_path / "run"
    code, out, err = _run(capsys, "train", str(path), "--out", str(run), "--quiet", "--checkpoint-every", "5")
    assert code == 0, err
    assert "trained 10 steps" in out and (run / "config.json").exists() and (run / "model.safetensors").exists()
    assert (run / "checkpoint" / "step-00000010" / "state.json").exists()
    samples = tmp_path / "x.safetensors"
    code, out, err = _run(capsys, "sample", str(run), "--n", "12", "--out", str(samples), "--quiet")
    assert code == 0, err
    assert "(5 NFE)" in out
    from safetensors.torch import load_file

    x = load_file(str(samples))["samples"]
    again = dk.Pipeline.load(run).sample(12, generator=list(range(12)))  # sample i: seed + i
    assert torch.equal(x, again)
    code, _, err = _run(capsys, "sample", str(run), "--n", "0", "--out", str(samples))
    assert code == 2 and "--n must be a positive number" in err
    code, _, err = _run(capsys, "export", str(run), "--format", "nope")
    assert code == 2 and "unknown exporter 'nope'" in err
    if ("exporter", "onnx") in dk.registry():
        code, out, err = _run(capsys, "export", str(run), "--format", "onnx")
        assert code == 0, err
        assert (run / "model.onnx").exists()


def test_train_command_errors(tmp_path, capsys):
    code, _, err = _run(capsys, "train", str(tmp_path / "missing.json"), "--out", str(tmp_path))
    assert code == 2 and "not found and no recipe of that name" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"process": "vp", "network": {"name": "mlp", "dim": 2}, "samplr": "ode",
                               "data": "moons"}))
    code, _, err = _run(capsys, "train", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2 and "did you mean 'sampler'" in err


def test_check_command(capsys):
    code, out, _ = _run(capsys, "check", "template")
    assert code == 0, out
    assert "PASS  sampler           template-ddim        oracle sampling" in out
    code, out, _ = _run(capsys, "check", "no-such-plugin")
    assert code == 1 and "no plugin called 'no-such-plugin'" in out


def test_plugin_subcommand_from_installed_template(capsys):
    code, out, _ = _run(capsys, "template-hello", "--name", "Ada")
    assert code == 0
    assert "hello, Ada!" in out and "template-ddim" in out


def test_plugin_registered_command_with_arguments(isolated_registry, capsys):
    calls = []

    def configure(parser):
        parser.add_argument("count", type=int)

    def run(args):
        calls.append(args.count)
        print(f"counted {args.count}")
        return 3

    isolated_registry.registry.register("command", "count-things", run, configure=configure,
                                        description="count")
    code, out, _ = _run(capsys, "count-things", "7")
    assert (code, calls, out.strip()) == (3, [7], "counted 7")
    code, _, err = _run(capsys, "no-such-command")
    assert code == 2 and "invalid choice" in err


def _cli_env(tmp_path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    env.pop("DIFFUSEKIT_STRICT_PLUGINS", None)
    env.update(extra)
    return env


def _diffusekit() -> list[str]:
    exe = shutil.which("diffusekit")
    return [exe] if exe else [sys.executable, "-m", "diffusekit.cli"]


@pytest.mark.slow
def test_broken_plugin_is_listed_and_strict_mode_fails(tmp_path):
    make_dist(tmp_path, "dk-cli-broken", "dk_cli_broken_plugin", BROKEN_PLUGIN)
    out = subprocess.run(_diffusekit() + ["plugins", "--json"], capture_output=True, text=True, timeout=300,
                         env=_cli_env(tmp_path))
    assert out.returncode == 0, out.stderr
    infos = {p["name"]: p for p in json.loads(out.stdout)}
    broken = infos["dk_cli_broken_plugin"]
    assert broken["status"] == "error" and broken["distribution"] == "dk-cli-broken"
    assert "Error importing plugin 'dk_cli_broken_plugin'" in broken["error"]
    assert infos["sde"]["status"] == "loaded"  # the host still works
    strict = subprocess.run(_diffusekit() + ["components", "process"], capture_output=True, text=True,
                            timeout=300, env=_cli_env(tmp_path, DIFFUSEKIT_STRICT_PLUGINS="1"))
    assert strict.returncode == 2
    assert "plugin 'dk_cli_broken_plugin' failed: Error importing plugin" in strict.stderr
