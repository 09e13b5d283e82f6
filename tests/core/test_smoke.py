import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture, mmd
from diffusekit.testing.oracles import oracle_pipeline


def test_builtin_plugins_load():
    names = {p["name"]: p for p in dk.plugins()}
    assert names["core"]["status"] == "loaded"
    assert names["sde"]["status"] == "loaded"
    assert "vp" in dk.components("process")


def test_oracle_ode_reaches_mixture():
    gm = GaussianMixture.ring()
    pipe = oracle_pipeline(dk.create("process", "vp"), gm, sampler={"name": "ode", "method": "heun", "steps": 50})
    x = pipe.sample(1000, generator=torch.Generator().manual_seed(0))
    ref = gm.sample(1000, torch.Generator().manual_seed(1))
    assert pipe.last_nfe == 99
    assert mmd(x, ref) < 0.01
