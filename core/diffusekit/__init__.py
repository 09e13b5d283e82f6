"""diffusekit: a plugin-based, modular PyTorch framework for diffusion-family models.

``import diffusekit`` is cheap: nothing heavy is imported and no plugin is loaded until a
public function is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # registry-level API
    "plugins": ("api", "plugins"),
    "components": ("api", "components"),
    "create": ("api", "create"),
    "info": ("api", "info"),
    "schema": ("api", "schema"),
    "registry": ("plugins", "get_registry"),
    "plugin_manager": ("plugins", "get_manager"),
    "hookimpl": ("hookspecs", "hookimpl"),
    "API_VERSION": ("plugins", "API_VERSION"),
    # composition
    "Pipeline": ("pipeline", "Pipeline"),
    "SamplingResult": ("pipeline", "SamplingResult"),
    "train": ("train", "train"),
    "export": ("export", "export"),
    # interfaces
    "Component": ("config", "Component"),
    "ComponentConfig": ("config", "ComponentConfig"),
    "ForwardProcess": ("process", "ForwardProcess"),
    "Perturbed": ("process", "Perturbed"),
    "AffineGaussian": ("process", "AffineGaussian"),
    "SDE": ("process", "SDE"),
    "SigmaParameterized": ("process", "SigmaParameterized"),
    "Discrete": ("process", "Discrete"),
    "LieGroup": ("process", "LieGroup"),
    "Product": ("process", "Product"),
    "Parameterization": ("parameterization", "Parameterization"),
    "Prediction": ("parameterization", "Prediction"),
    "Denoiser": ("denoiser", "Denoiser"),
    "Sampler": ("sampler", "Sampler"),
    "StepSampler": ("sampler", "StepSampler"),
    "Plan": ("sampler", "Plan"),
    "TimeGrid": ("sampler", "TimeGrid"),
    "Guidance": ("guidance", "Guidance"),
    "Conditioner": ("conditioner", "Conditioner"),
    "Exporter": ("export", "Exporter"),
    # errors
    "DiffusekitError": ("errors", "DiffusekitError"),
    "ConfigError": ("errors", "ConfigError"),
    "UnknownComponentError": ("errors", "UnknownComponentError"),
    "CompatibilityError": ("errors", "CompatibilityError"),
    "NonFiniteError": ("errors", "NonFiniteError"),
    "PluginError": ("errors", "PluginError"),
    "ShapeError": ("errors", "ShapeError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'diffusekit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
