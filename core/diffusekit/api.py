"""Registry-level public functions: ``plugins``, ``components``, ``create``, ``info``."""

from __future__ import annotations

from typing import Any

from .config import Component, config_dict, split_spec, validate_params
from .errors import ConfigError
from .plugins import get_manager, get_registry


def plugins() -> list[dict[str, Any]]:
    """Every discovered plugin: name, distribution, version, status, error, components."""
    return [i.as_dict() for i in get_manager().plugin_infos()]


def components(kind: str | None = None) -> list[str] | dict[str, list[str]]:
    """Registered names for one kind, or ``{kind: names}`` for all kinds."""
    reg = get_registry()
    if kind is not None:
        return reg.names(kind)
    from .registry import KINDS

    return {k: reg.names(k) for k in KINDS}


def create(kind: str, spec: Any, loc: str = "", **params: Any) -> Any:
    """Validated construction of a registered component.

    ``create("sampler", "ddim", steps=20)`` or ``create("sampler", {"name": "ddim", "steps": 20})``.
    """
    loc = loc or kind
    name, spec_params = split_spec(spec, loc)
    merged = {**spec_params, **params}
    registry = get_registry()
    entry = registry.get(kind, name, loc=f"{loc}.name" if isinstance(spec, dict) else loc)
    obj = entry.obj
    if isinstance(obj, type) and issubclass(obj, Component):
        cfg = validate_params(obj.Config, merged, loc)
        instance = obj(**dict(cfg))
    else:
        cfg = validate_params(entry.config, merged, loc)
        kwargs = dict(cfg) if cfg is not None else {}
        if callable(obj):
            instance = obj(**kwargs)
        elif kwargs:
            raise ConfigError(f"{kind} {name!r} takes no parameters, got {sorted(kwargs)}", loc=loc)
        else:
            instance = obj
    try:
        instance._dk_spec = (kind, name, config_dict(cfg))
    except (AttributeError, TypeError):  # immutable objects (e.g. dict recipes)
        pass
    return instance


def spec_of(obj: Any, kind: str) -> dict[str, Any] | None:
    """``{"name": ..., **params}`` that rebuilds ``obj`` through the registry, or None."""
    stored = getattr(obj, "_dk_spec", None)  # set by create() on whatever it built
    if stored is not None:
        # a Component's config may have changed since creation (e.g. a guidance scale)
        params = config_dict(obj.config) if isinstance(obj, Component) else stored[2]
        return {"name": stored[1], **params}
    name = get_registry().name_of(obj, kind)
    if name is None:
        return None
    return {"name": name, **config_dict(obj.config if isinstance(obj, Component) else None)}


def info(name: str) -> list[dict[str, Any]]:
    """Description, provenance and JSON schema of every component called ``name``."""
    out = []
    for spec in get_registry().find(name):
        d = spec.summary
        cfg = spec.config
        d["schema"] = cfg.model_json_schema() if hasattr(cfg, "model_json_schema") else None
        out.append(d)
    if not out:
        import difflib

        all_names = sorted({s.name for s in get_registry().specs()})
        close = difflib.get_close_matches(name, all_names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"no component called {name!r}{hint}", suggestions=close)
    return out


def schema(kind: str, name: str) -> dict[str, Any]:
    """JSON schema of one component's config."""
    spec = get_registry().get(kind, name)
    cfg = spec.config
    if cfg is None or not hasattr(cfg, "model_json_schema"):
        return {"title": name, "type": "object", "properties": {}, "additionalProperties": False}
    return cfg.model_json_schema()
