"""Pydantic v2 configs and validated construction of registered components.

A component spec is ``"name"`` or ``{"name": "...", **params}``. Parsing is two-pass: the
name is looked up in the registry first (so plugin-provided names work), then the parameters
are validated by that component's own ``Config`` model (``extra="forbid"``). Errors carry a
dotted location such as ``sampler.steps``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import typing

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from .errors import ConfigError


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_accepts_bool(a) for a in typing.get_args(annotation))


class ComponentConfig(BaseModel):
    """Base of every component config: unknown keys are errors, values are validated.

    Numbers are not booleans: ``dim=True`` is refused (pydantic's lax mode would read it as 1)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and not _accepts_bool(field.annotation):
                raise ValueError(f"expected {getattr(field.annotation, '__name__', field.annotation)}, not a boolean")
        return value


class EmptyConfig(ComponentConfig):
    """A component without parameters."""


def format_validation_error(err: ValidationError, loc: str = "", model: type[BaseModel] | None = None) -> ConfigError:
    """Turn a pydantic error into a :class:`ConfigError` naming field, value and fix.

    Unknown parameters get the closest field names of ``model`` as suggestions.
    """
    import difflib

    fields = sorted(getattr(model, "model_fields", {}) or {})
    suggestions: list[str] = []
    lines = []
    first_loc = loc
    for i, e in enumerate(err.errors()):
        field = ".".join(str(p) for p in e.get("loc", ()))
        where = ".".join(p for p in (loc, field) if p)
        if i == 0:
            first_loc = where
        value = e.get("input")
        if e.get("type") == "extra_forbidden":
            close = difflib.get_close_matches(str(field), fields, n=2, cutoff=0.6)
            suggestions.extend(close)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "remove it or check the spelling"
            msg = (f"{where}: unknown parameter {field!r} (value {value!r}); {hint} "
                   f"Parameters: {', '.join(fields) or '(none)'}")
        elif e.get("type") == "missing":
            msg = f"{where}: required parameter is missing"
        else:
            msg = f"{where}: {e.get('msg')} (got {value!r})"
        lines.append(msg)
    exc = ConfigError("; ".join(lines), suggestions=suggestions)
    exc.loc = first_loc
    exc.args = ("; ".join(lines),)
    return exc


def check_number(name: str, value: Any, *, integer: bool = False, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 none_ok: bool = False, fix: str = "", loc: str | None = None) -> Any:
    """Validate a plain argument (not a component config): an int (never a bool) or a finite
    number, within [low, high] (open ends with ``low_open`` / ``high_open``), or None when
    ``none_ok``. The error names ``loc`` (default ``name``), the bound, the value and ``fix``."""
    import math

    if value is None and none_ok:
        return value
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and (isinstance(value, int) if integer else isinstance(value, (int, float)))
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        rng = ""
        if low is not None or high is not None:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            rng = " " + " and ".join(x for x in (lo, hi) if x)
        raise ConfigError(f"{name} must be {kind}{rng}{' or None' if none_ok else ''}, got {value!r}"
                          + (f"; {fix}" if fix else ""), loc=loc or name)
    return value


def validate_params(model: type[BaseModel] | None, params: dict[str, Any], loc: str = "") -> BaseModel | dict:
    if model is None:
        return dict(params)
    try:
        return model.model_validate(params)
    except ValidationError as err:
        raise format_validation_error(err, loc, model) from None


def split_spec(spec: Any, loc: str) -> tuple[str, dict[str, Any]]:
    """First pass: ``"name"`` or ``{"name": ..., **params}`` -> (name, params)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ConfigError(
                f"component spec {spec!r} has no 'name'; write {{'name': '<registered name>', ...}}",
                loc=f"{loc}.name" if loc else "name",
            )
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
        if not isinstance(name, str):
            raise ConfigError(f"'name' must be a string, got {name!r}", loc=f"{loc}.name")
        return name, params
    raise ConfigError(
        f"expected a component name or a dict with 'name', got {type(spec).__name__} {spec!r}",
        loc=loc,
    )


def config_dict(config: Any) -> dict[str, Any]:
    """JSON-ready parameters of a validated config."""
    if config is None:
        return {}
    if isinstance(config, BaseModel):
        return config.model_dump(mode="json")
    return dict(config)


class Component:
    """Base class of configurable components (processes, samplers, guidance, ...).

    Subclasses declare a nested ``Config`` (a :class:`ComponentConfig`). Construction
    validates the parameters, so ``VP(beta_max=-1)`` fails with a named error just like
    ``dk.create("process", "vp", beta_max=-1)``. The validated config is ``self.config``.
    """

    Config: ClassVar[type[ComponentConfig]] = EmptyConfig

    def __init__(self, **params: Any) -> None:
        loc = getattr(type(self), "__name__", "")
        self.config = validate_params(type(self).Config, params, loc=loc)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in config_dict(self.config).items())
        return f"{type(self).__name__}({params})"
