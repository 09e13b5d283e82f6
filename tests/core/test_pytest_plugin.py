"""diffusekit.testing.pytest_plugin: the ``isolated_registry`` fixture, auto-loaded through
the ``pytest11`` entry point, gives a test an empty registry and restores the global one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import diffusekit as dk
from diffusekit.sampler import Sampler


class _Mine(Sampler):
    def sample(self, *a, **k):
        return None


def test_fixture_gives_an_empty_isolated_registry(isolated_registry):
    assert dk.registry() is isolated_registry.registry
    assert dk.components("sampler") == [] and dk.plugins() == []
    isolated_registry.registry.register("sampler", "only-here", _Mine)
    assert dk.components("sampler") == ["only-here"]


def test_global_registry_is_untouched_afterwards():
    assert "only-here" not in dk.components("sampler")
    assert "vp" in dk.components("process")


@pytest.mark.slow
def test_fixture_in_a_third_party_test_suite(tmp_path):
    """A plugin author's suite gets the fixture without any conftest (pytest11 entry point)."""
    (tmp_path / "test_author.py").write_text(textwrap.dedent('''
        import diffusekit as dk
        from diffusekit.sampler import Sampler

        class S(Sampler):
            def sample(self, *a, **k):
                return None

        def test_a(isolated_registry):
            isolated_registry.registry.register("sampler", "author-s", S)
            assert dk.components("sampler") == ["author-s"]

        def test_b():
            assert "author-s" not in dk.components("sampler")
    '''))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "2 passed" in out.stdout
