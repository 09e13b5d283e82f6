"""The conformance kit behind ``diffusekit check``: it passes correct components and catches
the contract violations it claims to check."""

from __future__ import annotations

import types

import pytest
import torch
from pydantic import Field

import diffusekit.builtins
from diffusekit.config import ComponentConfig
from diffusekit.hookspecs import hookimpl
from diffusekit.sampler import Plan, SamplerConfig, StepSampler
from diffusekit.testing.conformance import check_plugin, run_checks


class _DDIM(StepSampler):
    """Correct deterministic DDIM on a uniform grid."""

    requires = ()

    def build_plan(self, process):
        t = torch.linspace(process.t_max, process.t_min, self.config.steps + 1, dtype=torch.float64)
        a, _, c = process.coefficients(t)
        return Plan(t, {"a": a, "c": c})

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = denoiser(x, plan.t[i].expand(x.shape[0]), cond)
        return plan.coef["a"][i + 1] * pred.x0 + plan.coef["c"][i + 1] * pred.eps, carry, pred


class _LyingNFE(_DDIM):
    """Calls the network twice per step but claims steps evaluations."""

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        denoiser(x, plan.t[i].expand(x.shape[0]), cond)
        return super().step(x, i, plan, denoiser, cond, generator, carry)


class _GlobalNoise(_DDIM):
    """Adds noise from the global RNG: samples depend on the batch they are in."""

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        x, carry, pred = super().step(x, i, plan, denoiser, cond, generator, carry)
        return x + 0.01 * torch.randn_like(x), carry, pred


class _Wrong(_DDIM):
    """Forgets to rescale: x_{i+1} = x0_hat + eps_hat (wrong maths, wrong distribution)."""

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = denoiser(x, plan.t[i].expand(x.shape[0]), cond)
        return pred.x0 + pred.eps, carry, pred


class _LooseConfig(ComponentConfig):
    model_config = {"extra": "allow"}
    steps: int = Field(10, ge=1)


class _Loose(_DDIM):
    Config = _LooseConfig


def _plugin(**samplers) -> types.ModuleType:
    from diffusekit_sde.parameterizations import X0
    from diffusekit_sde.processes import VP

    mod = types.ModuleType("conformance_probe")

    def register_processes(register):
        register("vp", VP)

    def register_parameterizations(register):
        register("x0", X0)

    def register_samplers(register):
        for name, cls in samplers.items():
            register(name, cls)

    for fn in (register_processes, register_parameterizations, register_samplers):
        setattr(mod, fn.__name__, hookimpl(fn))
    return mod


@pytest.fixture
def probe(isolated_registry):
    isolated_registry.load_module(diffusekit.builtins)

    def load(**samplers):
        info = isolated_registry.load_module(_plugin(**samplers))
        assert info.status == "loaded", info.error
        return {(r.name, r.check): r for r in run_checks("conformance_probe")}

    return load


def test_correct_components_pass(probe, capsys):
    results = probe(good=_DDIM)
    assert all(r.status == "pass" for r in results.values()), [r.line() for r in results.values()]
    assert ("vp", "x0/eps/score/v round trip") in results
    assert check_plugin("conformance_probe", verbose=True)
    assert "0 failed" in capsys.readouterr().out


def test_violations_are_caught(probe):
    results = probe(liar=_LyingNFE, noisy=_GlobalNoise, wrong=_Wrong, loose=_Loose)
    nfe = results[("liar", "oracle sampling: finite, honest NFE, MMD")]
    assert nfe.status == "fail" and "reported NFE 40 != expected_nfe() 20" in nfe.detail
    inv = results[("noisy", "batch-invariant per-sample generators")]
    assert inv.status == "fail" and "changed by" in inv.detail
    mmd = results[("wrong", "oracle sampling: finite, honest NFE, MMD")]
    assert mmd.status == "fail" and ("MMD" in mmd.detail or "NaN" in mmd.detail)
    cfg = results[("loose", "config schema (extra=forbid)")]
    assert cfg.status == "fail" and "extra='allow'" in cfg.detail
    assert not check_plugin("conformance_probe")


def test_unknown_plugin_fails_cleanly(isolated_registry):
    (result,) = run_checks("nope")
    assert result.status == "fail" and "no plugin called 'nope'" in result.detail
