"""Exporters: turn a pipeline into a deployable artifact and verify it against PyTorch."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from .config import Component


class Exporter(Component):
    """Base class. ``backends`` lists runtime names usable with ``Pipeline.load(backend=...)``."""

    backends: tuple[str, ...] = ()

    @abstractmethod
    def export(self, pipe, path, **options) -> Any:
        """Write the artifact and return a verification report."""

    @classmethod
    def load_runtime(cls, directory, pipe, backend: str, device=None, **kwargs):
        """Return a network-like callable running the exported artifact."""
        raise NotImplementedError(f"{cls.__name__} provides no runtime backend")


def export(pipe, format: str, path, **options) -> Any:
    """``dk.export(pipe, "onnx", "model.onnx", mode="denoiser")`` -> report."""
    from .api import create

    exporter = create("exporter", format, loc="format")
    return exporter.export(pipe, path, **options)


# ``dk.export(pipe, "onnx", path)`` calls :func:`export` although it is this module's name.
from . import callable_module as _callable_module  # noqa: E402

_callable_module(__name__, lambda: export)
