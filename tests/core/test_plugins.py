"""Plugin manager: discovery through entry points, error isolation, strict mode, duplicate
names, API ranges, environment variables and rollback of partial registration."""

from __future__ import annotations

import types
import uuid
from importlib import metadata

import pytest

import diffusekit as dk
from diffusekit.errors import ConfigError, PluginError
from diffusekit.hookspecs import hookimpl
from diffusekit.plugins import API_VERSION, PluginManager
from diffusekit.sampler import Sampler

from core_plugin_fixtures import BROKEN_PLUGIN, OVERRIDE_VP_PLUGIN, entry_points_in, good_source, make_dist


def _pkg() -> str:
    return f"dk_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """These tests set the plugin environment variables themselves (CI runs with strict=1)."""
    for var in ("DIFFUSEKIT_STRICT_PLUGINS", "DIFFUSEKIT_LOAD_PLUGINS", "DIFFUSEKIT_DISABLE_PLUGINS",
                "DIFFUSEKIT_ALLOW_OVERRIDES", "DIFFUSEKIT_PLUGIN_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _manager(root) -> PluginManager:
    return PluginManager(entry_points=entry_points_in(root))


# ----------------------------------------------------------------------------- discovery
def test_builtin_plugins_are_ordinary_entry_points():
    eps = {ep.name: ep for ep in metadata.entry_points(group="diffusekit")}
    assert eps["core"].value == "diffusekit.builtins" and eps["sde"].value == "diffusekit_sde"
    infos = {p["name"]: p for p in dk.plugins()}
    for name, ep in eps.items():
        if ep.dist is not None and ep.dist.name == "diffusekit":
            assert infos[name]["status"] == "loaded", infos[name]["error"]
            assert infos[name]["distribution"] == "diffusekit" and infos[name]["version"]


def test_provenance_recorded_per_component():
    spec = dk.registry().get("process", "vp")
    assert (spec.provenance.plugin, spec.provenance.distribution) == ("sde", "diffusekit")
    assert spec.provenance.version == metadata.version("diffusekit")
    assert dk.info("vp")[0]["plugin"] == "sde"


@pytest.mark.slow
def test_loading_is_lazy(tmp_path):
    import subprocess
    import sys

    code = ("import sys, diffusekit as dk; dk.Pipeline; dk.create;"
            "assert 'diffusekit_sde' not in sys.modules, 'plugins loaded at import';"
            "assert dk.plugin_manager()._loaded is False; print('lazy')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "lazy" in out.stdout, out.stderr


# ----------------------------------------------------------------------------- isolation
def test_broken_plugin_is_isolated(plugin_dir):
    good, bad = _pkg(), _pkg()
    make_dist(plugin_dir, "dk-good", good, good_source([f"{good}-sampler"]))
    make_dist(plugin_dir, "dk-broken", bad, BROKEN_PLUGIN)
    manager = _manager(plugin_dir)
    infos = {i.name: i for i in manager.plugin_infos()}
    assert infos[bad].status == "error"
    assert f"Error importing plugin {bad!r}" in infos[bad].error
    assert "diffusekit_this_module_does_not_exist" in infos[bad].error
    assert infos[bad].traceback and "ModuleNotFoundError" in infos[bad].traceback
    assert infos[good].status == "loaded"
    assert manager.registry.names("sampler") == [f"{good}-sampler"]
    assert infos[bad].as_dict()["distribution"] == "dk-broken"


def test_strict_mode_raises(plugin_dir, monkeypatch):
    bad = _pkg()
    make_dist(plugin_dir, "dk-broken", bad, BROKEN_PLUGIN)
    monkeypatch.setenv("DIFFUSEKIT_STRICT_PLUGINS", "1")
    manager = _manager(plugin_dir)
    with pytest.raises(PluginError, match=f"plugin {bad!r} failed: Error importing"):
        manager.plugin_infos()
    with pytest.raises(PluginError):  # the incomplete registry stays unusable
        manager.ensure_loaded()


def test_duplicate_component_names_name_both_providers(plugin_dir):
    a, b = _pkg(), _pkg()
    make_dist(plugin_dir / "a", "dk-first", a, good_source(["shared-name"]))
    make_dist(plugin_dir / "b", "dk-second", b, good_source(["shared-name"]))
    monkeypatch_paths = [str(plugin_dir / "a"), str(plugin_dir / "b")]
    import sys

    sys.path[:0] = monkeypatch_paths
    try:
        manager = PluginManager(entry_points=entry_points_in(plugin_dir / "a") + entry_points_in(plugin_dir / "b"))
        infos = {i.name: i for i in manager.plugin_infos()}
    finally:
        for p in monkeypatch_paths:
            sys.path.remove(p)
    assert infos[a].status == "loaded" and infos[b].status == "error"
    err = infos[b].error
    assert "duplicate sampler name 'shared-name'" in err
    assert f"plugin {a!r} (dk-first 0.3.1)" in err and f"plugin {b!r} (dk-second 0.3.1)" in err
    # the winner keeps its provenance
    assert manager.registry.get("sampler", "shared-name").provenance.distribution == "dk-first"


def test_duplicate_at_runtime_and_override(isolated_registry):
    reg = isolated_registry.registry

    class A(Sampler):
        def sample(self, *a, **k):
            return None

    reg.register("sampler", "s", A)
    with pytest.raises(ConfigError, match="duplicate sampler name 's': already registered by plugin 'runtime'"):
        reg.register("sampler", "s", A)
    reg.register("sampler", "s", A, override=True)
    assert reg.names("sampler") == ["s"]


def test_incompatible_api_range_is_skipped(plugin_dir):
    old = _pkg()
    make_dist(plugin_dir, "dk-old", old, good_source([f"{old}-s"], api=">=0.1,<1"))
    info = {i.name: i for i in _manager(plugin_dir).plugin_infos()}[old]
    assert info.status == "skipped"
    assert "'>=0.1,<1'" in info.error and API_VERSION in info.error
    bad_range = _pkg()
    make_dist(plugin_dir, "dk-badrange", bad_range, good_source(["x"], api="one or two"))
    info = {i.name: i for i in _manager(plugin_dir).plugin_infos()}[bad_range]
    assert info.status == "skipped" and "invalid DIFFUSEKIT_API" in info.error


def test_duplicate_entry_point_names_across_distributions(plugin_dir):
    a, b = _pkg(), _pkg()
    make_dist(plugin_dir / "a", "dk-one", a, good_source([f"{a}-s"]), ep_name="same")
    make_dist(plugin_dir / "b", "dk-two", b, good_source([f"{b}-s"]), ep_name="same")
    import sys

    sys.path[:0] = [str(plugin_dir / "a"), str(plugin_dir / "b")]
    try:
        m = PluginManager(entry_points=entry_points_in(plugin_dir / "a") + entry_points_in(plugin_dir / "b"))
        infos = m.plugin_infos()
    finally:
        sys.path.remove(str(plugin_dir / "a"))
        sys.path.remove(str(plugin_dir / "b"))
    statuses = sorted((i.distribution, i.status) for i in infos)
    assert statuses == [("dk-one", "loaded"), ("dk-two", "skipped")]
    assert "already used by distribution 'dk-one'" in [i for i in infos if i.status == "skipped"][0].error


# ----------------------------------------------------------------------------- environment
def test_load_plugins_env_selects_distributions(plugin_dir, monkeypatch):
    a, b = _pkg(), _pkg()
    make_dist(plugin_dir, "dk-alpha", a, good_source([f"{a}-s"]))
    make_dist(plugin_dir, "dk-beta", b, good_source([f"{b}-s"]))
    monkeypatch.setenv("DIFFUSEKIT_LOAD_PLUGINS", "DK_Alpha")  # PEP 503: same as dk-alpha
    infos = {i.name: i.status for i in _manager(plugin_dir).plugin_infos()}
    assert infos == {a: "loaded", b: "disabled"}
    monkeypatch.setenv("DIFFUSEKIT_LOAD_PLUGINS", "")
    m = _manager(plugin_dir)
    assert {i.status for i in m.plugin_infos()} == {"disabled"}
    assert m.registry.names("sampler") == []


def test_disable_plugins_env(plugin_dir, monkeypatch):
    a, b = _pkg(), _pkg()
    make_dist(plugin_dir, "dk-alpha", a, good_source([f"{a}-s"]))
    make_dist(plugin_dir, "dk-beta", b, good_source([f"{b}-s"]))
    monkeypatch.setenv("DIFFUSEKIT_DISABLE_PLUGINS", f"dk-beta, {a}")  # distribution or entry-point name
    infos = {i.name: i.status for i in _manager(plugin_dir).plugin_infos()}
    assert infos == {a: "disabled", b: "disabled"}
    monkeypatch.setenv("DIFFUSEKIT_DISABLE_PLUGINS", "dk-beta")
    m = _manager(plugin_dir)
    assert {i.name: i.status for i in m.plugin_infos()} == {a: "loaded", b: "disabled"}
    assert m.registry.names("sampler") == [f"{a}-s"]


# ----------------------------------------------------------------------------- rollback
class _S(Sampler):
    def sample(self, *a, **k):
        return None


def _module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


def test_rollback_when_a_hook_raises_midway(isolated_registry):
    def register_samplers(register):
        register("first-ok", _S)
        register("second-ok", _S)
        raise RuntimeError("boom after two registrations")

    def register_processes(register):
        from diffusekit_sde.processes import VP

        register("never-committed", VP)  # staged first (processes register before samplers)

    info = isolated_registry.load_module(_module("halfway", register_samplers=register_samplers,
                                                 register_processes=register_processes))
    assert info.status == "error" and "boom after two registrations" in info.error
    assert isolated_registry.registry.names("sampler") == []
    assert isolated_registry.registry.names("process") == []
    assert not isolated_registry.pm.get_plugins(), "hook implementations must be unregistered"


def test_rollback_when_a_later_name_collides(isolated_registry):
    isolated_registry.registry.register("sampler", "taken", _S)

    def register_samplers(register):
        register("fresh", _S)
        register("taken", _S)

    info = isolated_registry.load_module(_module("collider", register_samplers=register_samplers))
    assert info.status == "error" and "duplicate sampler name 'taken'" in info.error
    assert isolated_registry.registry.names("sampler") == ["taken"]  # 'fresh' rolled back


def test_rollback_on_invalid_config_and_bad_kwargs(isolated_registry):
    def register_samplers(register):
        register("ok", _S)
        register("", _S)  # empty name

    info = isolated_registry.load_module(_module("empty-name", register_samplers=register_samplers))
    assert info.status == "error" and "non-empty string" in info.error
    assert isolated_registry.registry.names("sampler") == []


def test_hookimpl_typo_is_reported(isolated_registry):
    def register_sampler(register):  # missing "s"
        register("x", _S)

    info = isolated_registry.load_module(_module("typo", register_sampler=register_sampler))
    assert info.status == "error"
    assert "'register_sampler' (did you mean 'register_samplers'?)" in info.error


def test_hookimpl_with_wrong_arguments_is_rejected(isolated_registry):
    def register_samplers(register, extra):
        register("x", _S)

    info = isolated_registry.load_module(_module("badargs", register_samplers=register_samplers))
    assert info.status == "error" and "invalid hook implementation" in info.error
    assert not isolated_registry.pm.get_plugins()


def test_same_plugin_registering_a_name_twice(isolated_registry):
    def register_samplers(register):
        register("twice", _S)
        register("twice", _S)

    info = isolated_registry.load_module(_module("twice", register_samplers=register_samplers))
    assert info.status == "error" and "registers sampler 'twice' twice" in info.error


def test_builtins_load_first_and_override_is_explicit(plugin_dir, monkeypatch):
    """Built-ins (distribution 'diffusekit') load before third-party plugins; a third-party
    plugin replaces a component only with override=True AND the user's consent
    (DIFFUSEKIT_ALLOW_OVERRIDES), and provenance says who won."""
    third = _pkg()
    make_dist(plugin_dir, "aaa-early-name", third, OVERRIDE_VP_PLUGIN)  # sorts before "diffusekit" by name
    from importlib import metadata as md

    eps = entry_points_in(plugin_dir) + [ep for ep in md.entry_points(group="diffusekit") if ep.name == "sde"]
    refused = PluginManager(entry_points=eps)  # no consent: the plugin is refused, the built-in stays
    info = {i.name: i for i in refused.plugin_infos()}[third]
    assert info.status == "error" and f"DIFFUSEKIT_ALLOW_OVERRIDES={third}" in info.error
    assert "would replace process 'vp' of plugin 'sde'" in info.error
    assert refused.registry.get("process", "vp").provenance.plugin == "sde"
    monkeypatch.setenv("DIFFUSEKIT_ALLOW_OVERRIDES", third)
    manager = PluginManager(entry_points=eps)
    order = [i.name for i in manager.plugin_infos()]
    assert order == ["sde", third]
    assert {i.name: i for i in manager.plugin_infos()}[third].overrides == [("process", "vp", "sde")]
    spec = manager.registry.get("process", "vp")
    assert spec.provenance.distribution == "aaa-early-name" and spec.obj.__name__ == "MyVP"
    assert manager.registry.get("process", "ve").provenance.plugin == "sde"


def test_registered_classes_must_subclass_the_kind_base(isolated_registry):
    with pytest.raises(ConfigError, match="process 'p': .*_S must subclass diffusekit.ForwardProcess"):
        isolated_registry.registry.register("process", "p", _S)
    isolated_registry.registry.register("sampler", "factory", lambda **kw: _S(**kw))  # callables are fine
