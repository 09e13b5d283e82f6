"""The component registry: kind -> name -> :class:`ComponentSpec` with provenance.

Components are registered by plugins through the ``register_<kind>s`` hooks (see
:mod:`diffusekit.plugins`) or at run time with :func:`Registry.register`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError, UnknownComponentError

#: Component kinds and the hook that registers each of them.
KINDS: dict[str, str] = {
    "process": "register_processes",
    "parameterization": "register_parameterizations",
    "sampler": "register_samplers",
    "schedule": "register_schedules",
    "guidance": "register_guidance",
    "conditioner": "register_conditioners",
    "network": "register_networks",
    "dataset": "register_datasets",
    "metric": "register_metrics",
    "exporter": "register_exporters",
    "recipe": "register_recipes",
    "command": "register_commands",
    "writer": "register_writers",
}


@dataclass(frozen=True)
class Provenance:
    """Where a component came from."""

    plugin: str = "runtime"
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"plugin '{self.plugin}'{dist}"


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component: what to build, how to validate its parameters, and from where."""

    kind: str
    name: str
    obj: Any
    config: type | None = None
    description: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    extra: dict = field(default_factory=dict)

    @property
    def summary(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "plugin": self.provenance.plugin,
            "distribution": self.provenance.distribution,
            "version": self.provenance.version,
            "object": f"{getattr(self.obj, '__module__', '?')}.{getattr(self.obj, '__qualname__', repr(self.obj))}",
        }


#: Base class a registered *class* must derive from, per kind (factories and other callables
#: are accepted as they are).
BASES: dict[str, tuple[str, str]] = {
    "process": ("process", "ForwardProcess"),
    "parameterization": ("parameterization", "Parameterization"),
    "sampler": ("sampler", "Sampler"),
    "schedule": ("sampler", "TimeGrid"),
    "guidance": ("guidance", "Guidance"),
    "conditioner": ("conditioner", "Conditioner"),
    "exporter": ("export", "Exporter"),
    "writer": ("writers", "SampleWriter"),
}


def _check_base(kind: str, name: str, obj: Any) -> None:
    if kind not in BASES or not isinstance(obj, type):
        return
    import importlib

    module, cls = BASES[kind]
    base = getattr(importlib.import_module(f"diffusekit.{module}"), cls)
    if not issubclass(obj, base):
        raise ConfigError(
            f"{kind} {name!r}: {obj.__module__}.{obj.__qualname__} must subclass diffusekit.{cls}",
            loc=kind)


def _config_of(obj: Any, config: type | None) -> type | None:
    if config is not None:
        return config
    return getattr(obj, "Config", None)


class Registry:
    """Holds every registered component, per kind."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, ComponentSpec]] = {k: {} for k in KINDS}

    # -- registration -----------------------------------------------------------------
    def check_kind(self, kind: str) -> None:
        if kind not in self._items:
            close = difflib.get_close_matches(kind, list(self._items), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown component kind {kind!r}{hint} Kinds are {sorted(self._items)}",
                suggestions=close,
            )

    def make_spec(
        self,
        kind: str,
        name: str,
        obj: Any,
        config: type | None = None,
        description: str = "",
        provenance: Provenance | None = None,
        **extra: Any,
    ) -> ComponentSpec:
        self.check_kind(kind)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"component name must be a non-empty string, got {name!r}")
        _check_base(kind, name, obj)
        if not description:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        return ComponentSpec(
            kind=kind,
            name=name,
            obj=obj,
            config=_config_of(obj, config),
            description=description,
            provenance=provenance or Provenance(),
            extra=extra,
        )

    def add(self, spec: ComponentSpec, override: bool = False) -> None:
        """Add a spec; a duplicate name is an error naming both providers unless ``override``."""
        existing = self._items[spec.kind].get(spec.name)
        if existing is not None and not override:
            raise ConfigError(
                f"duplicate {spec.kind} name {spec.name!r}: already registered by "
                f"{existing.provenance.describe()}, registered again by "
                f"{spec.provenance.describe()}; rename one or pass override=True"
            )
        self._items[spec.kind][spec.name] = spec

    def register(
        self,
        kind: str,
        name: str,
        obj: Any,
        config: type | None = None,
        description: str = "",
        override: bool = False,
        provenance: Provenance | None = None,
        **extra: Any,
    ) -> ComponentSpec:
        spec = self.make_spec(kind, name, obj, config, description, provenance, **extra)
        self.add(spec, override=override)
        return spec

    def remove(self, kind: str, name: str) -> None:
        self._items[kind].pop(name, None)

    # -- lookup -------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self.check_kind(kind)
        return sorted(self._items[kind])

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        kinds = [kind] if kind else list(self._items)
        out: list[ComponentSpec] = []
        for k in kinds:
            self.check_kind(k)
            out.extend(self._items[k][n] for n in sorted(self._items[k]))
        return out

    def get(self, kind: str, name: str, loc: str = "") -> ComponentSpec:
        self.check_kind(kind)
        try:
            return self._items[kind][name]
        except KeyError:
            names = sorted(self._items[kind])
            close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
            raise UnknownComponentError(
                f"unknown {kind} {name!r}{hint} Registered {kind}s: {', '.join(names) or '(none)'} "
                f"(`diffusekit components {kind}` lists them; install a plugin for more)",
                loc=loc or kind,
                suggestions=close,
            ) from None

    def find(self, name: str) -> list[ComponentSpec]:
        """Every spec called ``name``, whatever its kind."""
        return [items[name] for items in self._items.values() if name in items]

    def name_of(self, obj: Any, kind: str | None = None) -> str | None:
        """Registered name of an object's class (first match), or None."""
        cls = obj if isinstance(obj, type) else type(obj)
        for spec in self.specs(kind):
            if spec.obj is cls:
                return spec.name
        return None

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._items.get(kind, {})

    def clear(self) -> None:
        for items in self._items.values():
            items.clear()


RegisterFn = Callable[..., ComponentSpec]


def _public_function():
    from .plugins import get_registry

    return get_registry


# ``dk.registry()`` returns the loaded process-wide registry although it is this module's name.
from . import callable_module as _callable_module  # noqa: E402

_callable_module(__name__, _public_function)
