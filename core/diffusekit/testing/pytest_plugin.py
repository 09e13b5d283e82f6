"""pytest plugin shipped with diffusekit (auto-loaded through the ``pytest11`` entry point).

Fixture ``isolated_registry``: a fresh :class:`diffusekit.plugins.PluginManager` that discovers
no entry points, installed as the process-wide manager for one test, so ``dk.registry()``,
``dk.create(...)``, ``dk.Pipeline(...)`` and the CLI see only what the test registers. The
previous manager (with every installed plugin) is restored afterwards, even on failure.

Usage in a plugin's own test suite::

    import my_plugin                      # the module your entry point names

    def test_registers(isolated_registry):
        info = isolated_registry.load_module(my_plugin)      # exactly what discovery does
        assert info.status == "loaded", info.error
        assert ("sampler", "my-sampler") in isolated_registry.registry

    def test_with_core_grids(isolated_registry):
        import diffusekit.builtins
        isolated_registry.load_module(diffusekit.builtins)   # uniform, karras, ... grids
        isolated_registry.registry.register("sampler", "tmp", MySampler)
"""

from __future__ import annotations

import pytest


@pytest.fixture
def isolated_registry():
    """A plugin manager with an empty registry, used process-wide for one test."""
    from diffusekit.plugins import PluginManager, set_manager

    manager = PluginManager(entry_points=[])
    old = set_manager(manager)
    try:
        yield manager
    finally:
        set_manager(old)
