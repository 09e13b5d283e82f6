"""pytest plugin shipped with diffusekit (entry point ``pytest11``): isolated registries."""

from __future__ import annotations

import pytest


@pytest.fixture
def isolated_registry(monkeypatch):
    """A fresh plugin manager with no plugins loaded; restored after the test.

    Register components with ``isolated_registry.registry.register(...)`` or load a plugin
    module with ``isolated_registry.load_module(module)``.
    """
    from diffusekit import plugins

    manager = plugins.PluginManager(entry_points=[])
    old = plugins.set_manager(manager)
    try:
        yield manager
    finally:
        plugins.set_manager(old)
