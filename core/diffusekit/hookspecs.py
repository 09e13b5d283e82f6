"""Hook specifications. Every hook takes a ``register`` callback:

``register(name, obj, config=None, description="", override=False, **extra)``.

A plugin module implements any subset of them with ``@diffusekit.hookimpl``.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("diffusekit")
hookimpl = pluggy.HookimplMarker("diffusekit")


@hookspec
def register_processes(register):
    """Register forward processes (``ForwardProcess`` subclasses)."""


@hookspec
def register_parameterizations(register):
    """Register parameterizations (``Parameterization`` subclasses)."""


@hookspec
def register_samplers(register):
    """Register samplers (``Sampler`` subclasses)."""


@hookspec
def register_schedules(register):
    """Register time grids (``TimeGrid`` subclasses)."""


@hookspec
def register_guidance(register):
    """Register guidance components (``Guidance`` subclasses)."""


@hookspec
def register_conditioners(register):
    """Register conditioners (``Conditioner`` subclasses)."""


@hookspec
def register_networks(register):
    """Register reference networks (``torch.nn.Module`` classes with a ``Config`` model)."""


@hookspec
def register_datasets(register):
    """Register datasets: callables ``(n, split, generator, **params) -> Tensor | tuple``."""


@hookspec
def register_metrics(register):
    """Register metrics: :class:`diffusekit.metrics.Metric` subclasses (partial sums that
    ``dk.distributed.evaluate`` all-reduces across ranks), or callables
    ``(samples, reference, **params) -> float``; a callable that scores one (estimate,
    reference) pair is registered with ``per_item=True`` so that evaluation can split the
    pairs across ranks."""


@hookspec
def register_exporters(register):
    """Register exporters (``Exporter`` subclasses)."""


@hookspec
def register_recipes(register):
    """Register recipes: named, ready pipeline configs (dicts) with training defaults."""


@hookspec
def register_commands(register):
    """Register CLI subcommands: ``register(name, run, configure=None, description="")``."""


@hookspec
def register_writers(register):
    """Register sample writers (:class:`diffusekit.writers.SampleWriter` subclasses): what
    ``diffusekit sample --out FILE`` writes for a file suffix (e.g. ``.gif`` for videos,
    ``.json`` for graphs)."""
