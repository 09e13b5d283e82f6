"""Tests a plugin author writes: the sampler on an exact oracle (no training), through the
diffusekit testing kit, in an isolated registry so nothing else installed interferes."""

import torch

import diffusekit_template
from diffusekit.testing import GaussianMixture, check_sampler, mmd_noise_floor
from diffusekit.testing.oracles import oracle_pipeline


def _vp():
    import diffusekit as dk

    return dk.create("process", "vp")


def test_ddim_reaches_the_mixture_on_the_oracle():
    gm = GaussianMixture.ring()
    pipe = oracle_pipeline(_vp(), gm, sampler={"name": "template-ddim", "steps": 50})
    ref = gm.sample(1000, torch.Generator().manual_seed(1))
    res = check_sampler(pipe, ref, n=1000)
    floor = mmd_noise_floor(lambda n, seed: gm.sample(n, torch.Generator().manual_seed(seed)), 1000, repeats=3)
    assert res["nfe"] == 50
    assert res["mmd"] < 5 * floor + 2e-3, (res, floor)


def test_plugin_module_registers_in_isolation(isolated_registry):
    info = isolated_registry.load_module(diffusekit_template)
    assert info.status == "loaded", info.error
    assert ("sampler", "template-ddim") in isolated_registry.registry
    assert ("command", "template-hello") in isolated_registry.registry
