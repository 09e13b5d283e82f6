"""Recipes build pipelines that train and sample; the plugin registers through its entry point."""

import pytest
import torch

import diffusekit as dk


@pytest.mark.parametrize("name", ["rectified-flow-moons", "rectified-flow-digits"])
def test_recipe_trains_a_few_steps_and_samples(name):
    cfg = dk.create("recipe", name)
    data_spec, train = cfg.pop("data"), cfg.pop("train")
    assert train["steps"] >= 1000
    pipe = dk.Pipeline.from_config(cfg)
    data = dk.create("dataset", data_spec)
    x = data.x if isinstance(data, dk.Example) else data
    res = dk.train(pipe, x[:256], steps=3, batch_size=16, lr=train["lr"], ema=None)
    assert len(res.losses) == 3
    out = pipe.sample(2, generator=[0, 1], sampler={"name": "flow-euler", "steps": 2})
    assert out.shape == (2, *x.shape[1:]) and torch.isfinite(out).all()


def test_plugin_is_discovered_through_its_entry_point():
    info = {p["name"]: p for p in dk.plugins()}
    assert info["flow"]["status"] == "loaded", info["flow"]["error"]
    for kind, name in [("process", "rectified-flow"), ("process", "interpolant"),
                       ("parameterization", "velocity"), ("sampler", "flow-euler"), ("sampler", "flow-heun"),
                       ("sampler", "flow-midpoint"), ("sampler", "flow-sde"), ("recipe", "rectified-flow-moons")]:
        assert (kind, name) in dk.registry()


def test_save_load_round_trip(tmp_path):
    pipe = dk.Pipeline(process={"name": "rectified-flow", "time_sampling": "logit-normal"},
                       parameterization={"name": "velocity", "coupling": "ot"},
                       network={"name": "mlp", "dim": 2, "hidden": 16, "depth": 1}, sampler={"name": "flow-heun"})
    pipe.save(tmp_path)
    back = dk.Pipeline.load(tmp_path)
    assert back.config == pipe.config
    assert torch.equal(back.sample(3, generator=[0, 1, 2]), pipe.sample(3, generator=[0, 1, 2]))
