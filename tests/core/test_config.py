"""Config parsing: two-pass ``{"name": ..., **params}``, every error path with its location
and, for unknown names, the closest registered names."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

import diffusekit as dk
from diffusekit import cli
from diffusekit.config import ComponentConfig, split_spec
from diffusekit.errors import ConfigError, UnknownComponentError
from diffusekit.sampler import Sampler

MLP = {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1}


def _err(fn) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn()
    return info.value


def test_two_pass_parsing_accepts_name_string_and_dict():
    assert split_spec("vp", "process") == ("vp", {})
    assert split_spec({"name": "vp", "beta_max": 10.0}, "process") == ("vp", {"beta_max": 10.0})
    proc = dk.create("process", {"name": "vp", "beta_max": 10.0})
    assert proc.config.beta_max == 10.0
    assert dk.create("process", "vp", beta_max=12.0).config.beta_max == 12.0


def test_plugin_names_need_no_closed_union(isolated_registry):
    """A name registered at run time is valid immediately (no discriminated union to extend)."""

    class Mine(Sampler):
        class Config(ComponentConfig):
            k: int = Field(3, ge=1)

        def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
            return x

    isolated_registry.registry.register("sampler", "mine", Mine)
    assert dk.create("sampler", {"name": "mine", "k": 5}).config.k == 5


def test_constraint_violation_has_location():
    e = _err(lambda: dk.create("sampler", {"name": "euler-maruyama", "steps": 0}))
    assert e.loc == "sampler.steps"
    assert str(e).startswith("sampler.steps:") and "greater than or equal to 1" in str(e) and "(got 0)" in str(e)


def test_wrong_type_in_pipeline_config_has_location():
    e = _err(lambda: dk.Pipeline.from_config(
        {"process": "vp", "network": MLP, "sampler": {"name": "euler-maruyama", "steps": "many"}}))
    assert e.loc == "sampler.steps" and "'many'" in str(e)
    e = _err(lambda: dk.Pipeline.from_config({"process": {"name": "vp", "beta_max": -1}, "network": MLP}))
    assert e.loc == "process.beta_max"
    e = _err(lambda: dk.Pipeline.from_config({"process": "vp", "network": {**MLP, "hidden": 2}}))
    assert e.loc == "network.hidden"


def test_unknown_parameter_suggests_the_field():
    e = _err(lambda: dk.create("sampler", {"name": "euler-maruyama", "stepz": 3}))
    assert e.loc == "sampler.stepz"
    assert "unknown parameter 'stepz'" in str(e) and "did you mean 'steps'?" in str(e)
    assert e.suggestions == ["steps"]


def test_unknown_name_suggests_closest_registered_names():
    with pytest.raises(UnknownComponentError) as info:
        dk.Pipeline.from_config({"process": "vp", "network": MLP, "sampler": {"name": "euler-maruyam"}})
    e = info.value
    assert e.loc == "sampler.name"
    assert e.suggestions[0] == "euler-maruyama"
    assert "did you mean 'euler-maruyama'" in str(e) and "Registered samplers:" in str(e)
    e = _err(lambda: dk.create("process", "vpp"))
    assert e.loc == "process" and "vp" in e.suggestions


def test_unknown_kind_suggests_kind():
    e = _err(lambda: dk.create("procss", "vp"))
    assert e.suggestions == ["process"] and "did you mean 'process'" in str(e)


def test_malformed_specs():
    e = _err(lambda: dk.create("process", {"beta_max": 3}))
    assert e.loc == "process.name" and "has no 'name'" in str(e)
    e = _err(lambda: dk.create("process", 3))
    assert e.loc == "process" and "got int 3" in str(e)
    e = _err(lambda: dk.create("process", {"name": 5}))
    assert e.loc == "process.name"


def test_missing_required_parameter():
    e = _err(lambda: dk.create("schedule", "explicit"))
    assert e.loc == "schedule.times" and "required parameter is missing" in str(e)


def test_unknown_pipeline_keys_suggest_the_key():
    e = _err(lambda: dk.Pipeline.from_config({"process": "vp", "network": MLP, "samplr": "ode"}))
    assert e.loc == "samplr" and "did you mean 'sampler'?" in str(e)
    e = _err(lambda: dk.Pipeline.from_config({"process": "vp"}))
    assert e.loc == "network" and "needs ['network']" in str(e)
    e = _err(lambda: dk.Pipeline.from_config(["vp"]))
    assert "must be a dict" in str(e)


def test_direct_construction_validates_too():
    from diffusekit_sde.processes import VP

    e = _err(lambda: VP(beta_max=-1.0))
    assert e.loc == "VP.beta_max"
    e = _err(lambda: VP(beta_min=5.0, beta_max=1.0))
    assert "must exceed" in str(e)


def test_schema_api_and_cli(capsys):
    schema = dk.schema("sampler", "euler-maruyama")
    assert schema["additionalProperties"] is False
    assert schema["properties"]["steps"]["minimum"] == 1
    assert cli.main(["schema", "sampler", "euler-maruyama"]) == 0
    assert json.loads(capsys.readouterr().out) == schema
    assert cli.main(["schema", "sampler", "nope"]) == 2
    assert "unknown sampler 'nope'" in capsys.readouterr().err
