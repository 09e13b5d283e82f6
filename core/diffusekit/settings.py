"""Settings read from the environment (``DIFFUSEKIT_*``), each validated with a clear error."""

from __future__ import annotations

import os

from .errors import ConfigError


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``name`` (else ``default``)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds", loc=name)
    return value
