"""The plugin template (examples/plugin-template) is a separate pip-installed distribution:
it must be discovered through its real entry point, listed, and usable by name."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture, mmd, mmd_noise_floor
from diffusekit.testing.oracles import oracle_pipeline

DIST = "diffusekit-plugin-template"


def test_template_is_installed_as_its_own_distribution():
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:  # pragma: no cover - CI installs it
        pytest.fail("the template is not installed: pip install -e examples/plugin-template")
    eps = [ep for ep in dist.entry_points if ep.group == "diffusekit"]
    assert [(ep.name, ep.value) for ep in eps] == [("template", "diffusekit_template")]


def test_template_is_discovered_and_listed_with_provenance():
    info = {p["name"]: p for p in dk.plugins()}["template"]
    assert info["status"] == "loaded", info["error"]
    assert info["distribution"] == DIST and info["version"] == metadata.version(DIST)
    assert info["components"] == {"command": ["template-hello"], "sampler": ["template-ddim"]}
    spec = dk.registry().get("sampler", "template-ddim")
    assert (spec.provenance.plugin, spec.provenance.distribution) == ("template", DIST)
    assert "template-ddim" in dk.components("sampler")


def test_template_sampler_by_name_on_the_exact_oracle():
    gm = GaussianMixture.ring()
    pipe = oracle_pipeline(dk.create("process", "vp"), gm, sampler={"name": "template-ddim", "steps": 40})
    ref = gm.sample(1000, torch.Generator().manual_seed(1))
    x = pipe.sample(1000, generator=torch.Generator().manual_seed(0))
    floor = mmd_noise_floor(lambda n, seed: gm.sample(n, torch.Generator().manual_seed(100 + seed)), 1000, repeats=3)
    assert pipe.last_nfe == 40
    assert mmd(x, ref) < 4 * floor + 2e-3
    # same sampler, same seed, through a config: identical result
    pipe2 = dk.Pipeline.from_config({"process": "vp", "parameterization": "x0", "network": pipe.network,
                                     "sampler": {"name": "template-ddim", "steps": 40}, "sample_shape": [2]})
    assert torch.equal(pipe2.sample(1000, generator=torch.Generator().manual_seed(0)), x)


def test_template_ddim_is_exact_for_gaussian_data():
    """For x0 ~ N(m, s^2) the exact DDIM map is affine and keeps the marginal: with many steps
    the sample mean and std match m and s (closed form)."""
    gm = GaussianMixture([[0.5, -1.0]], 0.3)
    pipe = oracle_pipeline(dk.create("process", "vp"), gm, sampler={"name": "template-ddim", "steps": 200})
    x = pipe.sample(4000, generator=torch.Generator().manual_seed(0)).double()
    assert torch.allclose(x.mean(0), torch.tensor([0.5, -1.0], dtype=torch.float64), atol=0.02)
    assert torch.allclose(x.std(0), torch.full((2,), 0.3, dtype=torch.float64), atol=0.01)


def test_load_plugins_env_can_select_only_the_template(monkeypatch):
    from diffusekit.plugins import PluginManager

    monkeypatch.setenv("DIFFUSEKIT_LOAD_PLUGINS", "diffusekit_plugin_template")
    manager = PluginManager()
    status = {i.name: i.status for i in manager.plugin_infos()}
    assert status["template"] == "loaded" and status["sde"] == "disabled" and status["core"] == "disabled"
    assert manager.registry.names("sampler") == ["template-ddim"]
