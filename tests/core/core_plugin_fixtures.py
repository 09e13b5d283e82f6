"""Throwaway plugin distributions for plugin-manager tests.

``make_dist`` writes a real installed-distribution layout (``pkg/`` + ``name.dist-info`` with
``METADATA`` and ``entry_points.txt``) into a directory; putting that directory on
``sys.path`` (or ``PYTHONPATH`` for a subprocess) makes ``importlib.metadata`` discover it
exactly like a pip-installed plugin.
"""

from __future__ import annotations

import textwrap
from importlib import metadata
from pathlib import Path

GOOD_PLUGIN = '''
from diffusekit import hookimpl
from diffusekit.sampler import Sampler

DIFFUSEKIT_API = {api!r}


class {cls}(Sampler):
    """A sampler from a throwaway plugin."""

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        return x


@hookimpl
def register_samplers(register):
    for name in {names!r}:
        register(name, {cls})
'''

#: a plugin replacing the score-SDE plugin's ``vp`` process (override=True)
OVERRIDE_VP_PLUGIN = '''
from diffusekit import hookimpl
from diffusekit_sde.processes import VP


class MyVP(VP):
    """A replacement VP."""


@hookimpl
def register_processes(register):
    register("vp", MyVP, override=True)
'''

BROKEN_PLUGIN = '''
import diffusekit_this_module_does_not_exist  # noqa: F401  (the import fails)
'''


def make_dist(root: Path, dist: str, package: str, source: str, ep_name: str | None = None,
              version: str = "0.3.1") -> Path:
    """Write an importable package and its dist-info; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    pkg = root / package
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[diffusekit]\n{ep_name or package} = {package}\n")
    return root


def good_source(names: list[str], cls: str = "ToySampler", api: str = ">=1,<2") -> str:
    return GOOD_PLUGIN.format(names=names, cls=cls, api=api)


def entry_points_in(root: Path) -> list[metadata.EntryPoint]:
    """Entry points of the ``diffusekit`` group of every distribution under ``root``."""
    eps = []
    for dist in metadata.distributions(path=[str(root)]):
        eps.extend(ep for ep in dist.entry_points if ep.group == "diffusekit")
    return sorted(eps, key=lambda ep: ep.name)
