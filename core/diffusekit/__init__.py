"""diffusekit: a plugin-based, modular PyTorch framework for diffusion-family models.

``import diffusekit`` is cheap: nothing heavy is imported and no plugin is loaded until a
public function is first used.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable

__version__ = "0.1.0"

_LAZY = {
    # registry-level API
    # ``plugins``, ``registry``, ``train`` and ``export`` are both submodules and functions:
    # the submodules are made callable (see ``callable_module``), so ``dk.train(...)`` and
    # ``dk.train.EMA`` both work whichever was imported first.
    "plugins": ("plugins", None),
    "components": ("api", "components"),
    "create": ("api", "create"),
    "info": ("api", "info"),
    "schema": ("api", "schema"),
    "registry": ("registry", None),
    "plugin_manager": ("plugins", "get_manager"),
    "hookimpl": ("hookspecs", "hookimpl"),
    "API_VERSION": ("plugins", "API_VERSION"),
    # composition
    "Pipeline": ("pipeline", "Pipeline"),
    "SamplingResult": ("pipeline", "SamplingResult"),
    "train": ("train", None),
    "export": ("export", None),
    "distributed": ("distributed", None),
    # interfaces
    "Component": ("config", "Component"),
    "ComponentConfig": ("config", "ComponentConfig"),
    "ForwardProcess": ("process", "ForwardProcess"),
    "Perturbed": ("process", "Perturbed"),
    "AdditiveGaussian": ("process", "AdditiveGaussian"),
    "PinnedBridge": ("process", "PinnedBridge"),
    "EndpointConditioned": ("process", "EndpointConditioned"),
    "DenoisingODE": ("process", "DenoisingODE"),
    "Absorbing": ("process", "Absorbing"),
    "Likelihood": ("process", "Likelihood"),
    "PriorDensity": ("process", "PriorDensity"),
    "ProductProcess": ("process", "ProductProcess"),
    "Example": ("state", "Example"),
    "state": ("state", None),
    "check_fit": ("fit", "check_fit"),
    "SDE": ("process", "SDE"),
    "SigmaParameterized": ("process", "SigmaParameterized"),
    "Discrete": ("process", "Discrete"),
    "LieGroup": ("process", "LieGroup"),
    "Product": ("process", "Product"),
    "Network": ("network", "Network"),
    "PipelineModule": ("network", "PipelineModule"),
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
    "Metric": ("metrics", "Metric"),
    # errors
    "DiffusekitError": ("errors", "DiffusekitError"),
    "ConfigError": ("errors", "ConfigError"),
    "UnknownComponentError": ("errors", "UnknownComponentError"),
    "CompatibilityError": ("errors", "CompatibilityError"),
    "NonFiniteError": ("errors", "NonFiniteError"),
    "PluginError": ("errors", "PluginError"),
    "ShapeError": ("errors", "ShapeError"),
    "IntegrityError": ("errors", "IntegrityError"),
    "WriteError": ("errors", "WriteError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def callable_module(module_name: str, target: Callable[[], Callable[..., Any]]) -> None:
    """Make the already-imported module ``module_name`` callable: ``module(*a)`` runs
    ``target()(*a)``. Used for submodules whose name is also a public function."""
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return target()(*args, **kwargs)

    _CallableModule.__name__ = f"callable module {module_name}"
    module.__class__ = _CallableModule


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'diffusekit' has no attribute {name!r}") from None
    mod = importlib.import_module(f"{__name__}.{module}")
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
