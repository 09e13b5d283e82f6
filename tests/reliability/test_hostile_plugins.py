"""Hostile or broken plugins installed in a temporary site directory never take the host down:
``sys.exit`` at import, a command named like a built-in, an import that hangs, an entry-point
name collision under strict mode, and a silent override of a built-in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "core"))
from core_plugin_fixtures import OVERRIDE_VP_PLUGIN, good_source, make_dist  # noqa: E402


def _cli(tmp_path, *args, timeout=120, **env):
    exe = shutil.which("diffusekit")
    cmd = ([exe] if exe else [sys.executable, "-m", "diffusekit.cli"]) + list(args)
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
                    OMP_NUM_THREADS="1")
    for var in ("DIFFUSEKIT_STRICT_PLUGINS", "DIFFUSEKIT_DISABLE_PLUGINS", "DIFFUSEKIT_ALLOW_OVERRIDES"):
        full_env.pop(var, None)
    full_env.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def _infos(out) -> dict:
    return {p["name"]: p for p in json.loads(out.stdout)}


@pytest.mark.slow
def test_sys_exit_at_import_is_isolated(tmp_path):
    make_dist(tmp_path, "dk-exiter", "dk_exiter", "import sys\nsys.exit(0)\n")
    out = _cli(tmp_path, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    info = _infos(out)["dk_exiter"]
    assert info["status"] == "error" and "SystemExit" in info["error"]
    assert _infos(out)["sde"]["status"] == "loaded"
    comps = _cli(tmp_path, "components", "process")
    assert comps.returncode == 0 and "vp" in comps.stdout


@pytest.mark.slow
def test_sys_exit_inside_a_hook_is_isolated(tmp_path):
    source = "import sys\nfrom diffusekit import hookimpl\n\n@hookimpl\ndef register_samplers(register):\n    sys.exit(3)\n"
    make_dist(tmp_path, "dk-hookexit", "dk_hookexit", source)
    out = _cli(tmp_path, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    assert "called sys.exit(3)" in _infos(out)["dk_hookexit"]["error"]


@pytest.mark.slow
def test_plugin_command_named_like_a_builtin_is_ignored(tmp_path):
    source = """
from diffusekit import hookimpl

def hijack(args):
    print("HIJACKED")
    return 0

def harmless(args):
    print("HARMLESS")
    return 0

@hookimpl
def register_commands(register):
    register("train", hijack, description="not the real train")
    register("harmless-cmd", harmless, description="a plugin command")
"""
    make_dist(tmp_path, "dk-hijack", "dk_hijack", source)
    help_out = _cli(tmp_path, "--help")
    assert help_out.returncode == 0 and "harmless-cmd" in help_out.stdout  # plugin commands are listed
    assert "registers a command 'train', which is a built-in" in help_out.stderr
    run = _cli(tmp_path, "train", "--help")
    assert run.returncode == 0 and "HIJACKED" not in run.stdout and "CONFIG is a JSON file" in run.stdout
    assert "HARMLESS" in _cli(tmp_path, "harmless-cmd").stdout


@pytest.mark.slow
def test_hanging_import_times_out(tmp_path):
    make_dist(tmp_path, "dk-sleeper", "dk_sleeper", "import time\ntime.sleep(600)\n")
    t0 = time.perf_counter()
    out = _cli(tmp_path, "plugins", "--json", DIFFUSEKIT_PLUGIN_TIMEOUT="3")
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - t0 < 60
    info = _infos(out)["dk_sleeper"]
    assert info["status"] == "error" and "did not finish within 3 s" in info["error"]
    assert _infos(out)["sde"]["status"] == "loaded"


@pytest.mark.slow
def test_entry_point_collision_under_strict_mode_can_be_disabled(tmp_path):
    make_dist(tmp_path / "a", "dk-one", "dk_coll_a", good_source(["coll-a"]), ep_name="samename")
    make_dist(tmp_path / "b", "dk-two", "dk_coll_b", good_source(["coll-b"]), ep_name="samename")
    path = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])
    strict = _cli(tmp_path, "components", "sampler", PYTHONPATH=path, DIFFUSEKIT_STRICT_PLUGINS="1")
    assert strict.returncode == 2 and "entry point name 'samename' is already used" in strict.stderr
    fixed = _cli(tmp_path, "components", "sampler", PYTHONPATH=path, DIFFUSEKIT_STRICT_PLUGINS="1",
                 DIFFUSEKIT_DISABLE_PLUGINS="dk-two")
    assert fixed.returncode == 0, fixed.stderr
    assert "coll-a" in fixed.stdout and "coll-b" not in fixed.stdout


@pytest.mark.slow
def test_override_of_a_builtin_needs_consent_and_is_shown(tmp_path):
    make_dist(tmp_path, "dk-overrider", "dk_overrider", OVERRIDE_VP_PLUGIN)
    strict = _cli(tmp_path, "info", "vp", DIFFUSEKIT_STRICT_PLUGINS="1")
    assert strict.returncode == 2 and "DIFFUSEKIT_ALLOW_OVERRIDES=dk_overrider" in strict.stderr
    plain = _cli(tmp_path, "plugins")
    assert "would replace process 'vp'" in plain.stdout
    allowed = _cli(tmp_path, "plugins", DIFFUSEKIT_ALLOW_OVERRIDES="dk-overrider")
    assert "overrides process 'vp' of plugin 'sde'" in allowed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_timeout_setting_is_named(tmp_path, value):
    out = _cli(tmp_path, "components", "process", DIFFUSEKIT_PLUGIN_TIMEOUT=value)
    assert out.returncode == 2 and "DIFFUSEKIT_PLUGIN_TIMEOUT" in out.stderr and out.stderr.count("\n") == 1
