"""Plugin manager: lazy, isolated loading of ``diffusekit`` entry points through pluggy.

Environment variables:

* ``DIFFUSEKIT_STRICT_PLUGINS=1``: a plugin that fails to load raises :class:`PluginError`.
* ``DIFFUSEKIT_LOAD_PLUGINS``: comma list of distributions (or entry-point names) to load;
  ``""`` loads none. Unset loads all.
* ``DIFFUSEKIT_DISABLE_PLUGINS``: comma list of distributions or entry-point names to skip
  (checked first, so it also settles an entry-point name that two distributions use).
* ``DIFFUSEKIT_ALLOW_OVERRIDES``: comma list of plugins (entry-point or distribution names, or
  ``all``) allowed to replace a component another plugin registered (``override=True``).
  Without it such a plugin is refused with a message naming what it would replace; allowed
  replacements are listed by ``diffusekit plugins``.
* ``DIFFUSEKIT_PLUGIN_TIMEOUT``: seconds a plugin import may take (default 60); a plugin that
  takes longer is reported as failed and the others load.

A plugin is isolated from the host: an exception, ``sys.exit`` or a hang while importing or
registering marks that plugin as failed (``diffusekit plugins`` shows why) and the rest load.

A plugin module may declare ``DIFFUSEKIT_API = ">=1,<2"`` (a PEP 440 specifier); plugins whose
range excludes :data:`API_VERSION` are skipped with a message.
"""

from __future__ import annotations

import os
import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError
from .registry import KINDS, ComponentSpec, Provenance, Registry

#: Version of the core plugin API that plugins declare compatibility with.
API_VERSION = "1.0"
ENTRY_POINT_GROUP = "diffusekit"
CORE_DISTRIBUTION = "diffusekit"


@dataclass
class PluginInfo:
    """What ``diffusekit plugins`` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    status: str = "loaded"  # loaded | error | skipped | disabled
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)
    traceback: str | None = field(default=None, repr=False)
    #: wall-clock seconds spent importing and registering the plugin
    seconds: float = 0.0
    #: ``(kind, name, plugin replaced)`` for each component this plugin overrides
    overrides: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "overrides": [{"kind": k, "name": n, "replaced": r} for k, n, r in self.overrides],
            "components": {
                kind: sorted(n for k, n in self.components if k == kind)
                for kind in sorted({k for k, _ in self.components})
            },
        }


def normalize(name: str) -> str:
    """PEP 503 normalisation: ``Diffusekit_Plugin.Template`` -> ``diffusekit-plugin-template``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {normalize(p.strip()) for p in raw.split(",") if p.strip()}


def _timeout() -> float:
    from .settings import env_seconds

    return env_seconds("DIFFUSEKIT_PLUGIN_TIMEOUT", 60.0)


def _override_allowed(info: "PluginInfo") -> bool:
    allowed = _env_list("DIFFUSEKIT_ALLOW_OVERRIDES") or set()
    names = {normalize(n) for n in (info.name, info.distribution) if n}
    return "all" in allowed or bool(names & allowed)


def _strict() -> bool:
    return os.environ.get("DIFFUSEKIT_STRICT_PLUGINS", "").lower() in {"1", "true", "yes", "on"}


def _api_compatible(module: Any) -> str | None:
    """Return an error message if the module's declared API range excludes ours."""
    declared = getattr(module, "DIFFUSEKIT_API", None)
    if not declared:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(str(declared))
    except InvalidSpecifier:
        return f"declares an invalid DIFFUSEKIT_API {declared!r} (expected e.g. '>=1,<2')"
    if API_VERSION not in spec:
        return (
            f"supports diffusekit plugin API {declared!r} but this core provides {API_VERSION}; "
            "upgrade the plugin or diffusekit"
        )
    return None


def _unknown_hooks(module: Any) -> str | None:
    """Message naming hook implementations that match no hook spec (typos), or None."""
    import difflib

    known = set(KINDS.values())
    bad = []
    for attr in dir(module):
        fn = getattr(module, attr, None)
        if callable(fn) and hasattr(fn, f"{ENTRY_POINT_GROUP}_impl") and attr not in known:
            close = difflib.get_close_matches(attr, sorted(known), n=1)
            bad.append(f"{attr!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if not bad:
        return None
    return f"unknown hook implementation {', '.join(bad)}; hooks are {sorted(known)}"


class PluginManager:
    """Discovers plugins once, lazily, and fills a :class:`Registry`."""

    def __init__(self, registry: Registry | None = None, entry_points: Iterable | None = None):
        self.registry = registry if registry is not None else Registry()
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._entry_points = entry_points
        self._loaded = False
        self._strict_error: PluginError | None = None
        self._lock = threading.RLock()

    # -- discovery ----------------------------------------------------------------------
    def _discover(self) -> list:
        if self._entry_points is not None:
            eps = list(self._entry_points)
        else:
            eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        # Built-ins first (deterministic), then third-party plugins by name.
        def key(ep):
            dist = ep.dist.name if getattr(ep, "dist", None) else ""
            return (dist != CORE_DISTRIBUTION, dist, ep.name)

        return sorted(eps, key=key)

    def ensure_loaded(self) -> None:
        if self._loaded:
            if self._strict_error is not None:  # strict mode: an incomplete registry stays fatal
                raise self._strict_error
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            try:
                self._load_all()
            except PluginError as exc:
                self._strict_error = exc
                raise

    def _load_all(self) -> None:
        """Discover and load every entry point (built-ins first), honouring the env vars."""
        only = _env_list("DIFFUSEKIT_LOAD_PLUGINS")
        disabled = _env_list("DIFFUSEKIT_DISABLE_PLUGINS") or set()
        for ep in self._discover():
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist else None
            names = {normalize(n) for n in (ep.name, dist_name) if n}
            info = PluginInfo(
                name=ep.name,
                distribution=dist_name,
                version=dist.version if dist else None,
                module=ep.value,
            )
            if names & disabled:  # first: disabling settles an entry-point name collision
                info.status = "disabled"
                self.infos[ep.name if ep.name not in self.infos else f"{ep.name}@{dist_name}"] = info
                continue
            if ep.name in self.infos and self.infos[ep.name].status != "disabled":
                info.status, info.error = "skipped", (
                    f"entry point name {ep.name!r} is already used by distribution "
                    f"{self.infos[ep.name].distribution!r}"
                )
                self.infos[f"{ep.name}@{dist_name}"] = info
                self._fail(info)
                continue
            self.infos[ep.name] = info
            if only is not None and not (names & only):
                info.status = "disabled"
                continue
            self._load_entry_point(ep, info)

    def _fail(self, info: PluginInfo) -> None:
        if _strict():
            raise PluginError(f"diffusekit plugin {info.name!r} failed: {info.error}")

    def _load_entry_point(self, ep, info: PluginInfo) -> None:
        start = time.perf_counter()
        try:
            self._import_and_register(ep, info)
        finally:
            info.seconds = time.perf_counter() - start

    def _import_and_register(self, ep, info: PluginInfo) -> None:
        result: dict[str, Any] = {}

        def target() -> None:
            try:
                result["module"] = ep.load()
            except BaseException as exc:  # noqa: BLE001 - SystemExit included: a plugin never ends the host
                result["error"] = exc
                result["traceback"] = traceback.format_exc()

        timeout = _timeout()
        worker = threading.Thread(target=target, name=f"diffusekit-plugin-{info.name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            info.status = "error"
            info.error = (f"importing plugin {info.name!r} did not finish within {timeout:g} s (it keeps running in "
                          "the background); fix or disable it (DIFFUSEKIT_DISABLE_PLUGINS), or raise "
                          "DIFFUSEKIT_PLUGIN_TIMEOUT")
            self._fail(info)
            return
        if "error" in result:
            exc = result["error"]
            if isinstance(exc, KeyboardInterrupt):
                raise exc
            info.status = "error"
            info.error = f"Error importing plugin {info.name!r}: {type(exc).__name__}: {exc}"
            info.traceback = result.get("traceback")
            self._fail(info)
            return
        self.load_module(result["module"], info)

    def load_module(self, module: Any, info: PluginInfo | None = None) -> PluginInfo:
        """Register one plugin object (module or instance) with per-plugin rollback."""
        if info is None:
            name = getattr(module, "__name__", repr(module))
            info = PluginInfo(name=name, module=name)
            self.infos[name] = info
        message = _api_compatible(module)
        if message:
            info.status, info.error = "skipped", message
            self._fail(info)
            return info
        unknown = _unknown_hooks(module)
        if unknown:
            info.status, info.error = "error", unknown
            self._fail(info)
            return info
        provenance = Provenance(info.name, info.distribution, info.version)
        staged: list[tuple[ComponentSpec, bool]] = []
        try:
            self.pm.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001 - validation errors leave partial state
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            info.status, info.error = "error", f"invalid hook implementation: {exc}"
            self._fail(info)
            return info
        try:
            for kind, hookname in KINDS.items():
                caller = getattr(self.pm.hook, hookname)
                for impl in caller.get_hookimpls():
                    if impl.plugin is not module:
                        continue

                    def register(name, obj, config=None, description="", override=False,
                                 _kind=kind, **extra):
                        spec = self.registry.make_spec(
                            _kind, name, obj, config, description, provenance, **extra
                        )
                        staged.append((spec, override))
                        return spec

                    try:
                        impl.function(register=register)
                    except SystemExit as exc:  # a plugin never ends the host
                        raise PluginError(f"{hookname} called sys.exit({exc.code!r})") from None
            # Check every name before committing anything (all or nothing).
            seen: set[tuple[str, str]] = set()
            for spec, override in staged:
                key = (spec.kind, spec.name)
                if key in seen:
                    raise ConfigError(f"plugin registers {spec.kind} {spec.name!r} twice")
                seen.add(key)
                if key in self.registry and not override:
                    self.registry.add(spec)  # raises the duplicate error naming both
                if key in self.registry and override and not _override_allowed(info):
                    old = self.registry.get(*key).provenance
                    raise PluginError(
                        f"plugin {info.name!r} would replace {spec.kind} {spec.name!r} of {old.describe()}; "
                        f"replacing components needs the user's consent: DIFFUSEKIT_ALLOW_OVERRIDES={info.name}")
        except Exception as exc:  # noqa: BLE001 - rollback
            self.pm.unregister(module)
            info.status = "error"
            info.error = f"{type(exc).__name__}: {exc}"
            info.traceback = traceback.format_exc()
            self._fail(info)
            return info
        for spec, override in staged:
            key = (spec.kind, spec.name)
            if key in self.registry:
                info.overrides.append((spec.kind, spec.name, self.registry.get(*key).provenance.plugin))
            self.registry.add(spec, override=override)
            info.components.append((spec.kind, spec.name))
        info.status = "loaded"
        return info

    # -- queries --------------------------------------------------------------------------
    def plugin_infos(self) -> list[PluginInfo]:
        self.ensure_loaded()
        return list(self.infos.values())


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use; plugins load on first access)."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = PluginManager()
    return _manager


def set_manager(manager: PluginManager | None) -> PluginManager | None:
    """Swap the process-wide manager (used by the isolated-registry test fixture)."""
    global _manager
    old, _manager = _manager, manager
    return old


def get_registry() -> Registry:
    """The process-wide registry with every enabled plugin loaded."""
    manager = get_manager()
    manager.ensure_loaded()
    return manager.registry


def _public_function():
    from .api import plugins

    return plugins


# ``dk.plugins()`` lists the plugins although ``diffusekit.plugins`` is this module.
from . import callable_module as _callable_module  # noqa: E402

_callable_module(__name__, _public_function)
