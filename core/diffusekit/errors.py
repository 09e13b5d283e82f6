"""Exception types. Every error names the offending field or component, the value and a fix."""

from __future__ import annotations


class DiffusekitError(Exception):
    """Base class of every error raised by diffusekit."""


class ConfigError(DiffusekitError, ValueError):
    """A configuration could not be validated.

    ``loc`` is a dotted location such as ``sampler.steps``; ``suggestions`` lists close
    registered names when an unknown component name was given.
    """

    def __init__(self, message: str, loc: str = "", suggestions: list[str] | None = None):
        self.loc = loc
        self.suggestions = list(suggestions or [])
        prefix = f"{loc}: " if loc else ""
        super().__init__(prefix + message)


class UnknownComponentError(ConfigError, KeyError):
    """A component name is not registered for its kind."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class CompatibilityError(DiffusekitError, TypeError):
    """Two components do not fit together (e.g. a Gaussian sampler on a discrete process)."""


class NonFiniteError(DiffusekitError, FloatingPointError):
    """A sampling state became NaN or Inf; ``step`` is the index of the first bad step."""

    def __init__(self, message: str, step: int | None = None):
        self.step = step
        super().__init__(message)


class PluginError(DiffusekitError, ImportError):
    """A plugin failed to load or register (raised only in strict mode)."""


class ShapeError(DiffusekitError, ValueError):
    """An input tensor has the wrong shape."""


class IntegrityError(DiffusekitError, ValueError):
    """A file written by diffusekit does not match its manifest (missing, changed hash, wrong
    index range or format); the message names the file and how to regenerate it."""


class WriteError(DiffusekitError, OSError):
    """A file could not be written (full disk, quota, permissions); what was there before is
    unchanged and no partial file is left."""
