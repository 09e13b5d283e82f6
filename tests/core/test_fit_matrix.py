"""The fit matrix: every (process, parameterization, sampler, guidance) combination of the
registered components either samples (a few steps, finite, the right structure) or is
refused at construction with a CompatibilityError naming what fits. No accepted combination
may raise anything else.

Each process gives its conformance example (state and condition) and a tiny network of the
right output structure (``ForwardProcess.conformance_network``). Components are built with
their default configs (steps reduced to 3 where the config has ``steps``); a component that
cannot be built with defaults (it needs data, an operator or a reward) is left out, and so is
guidance that needs an observation supplied by the user at sampling time.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

import diffusekit as dk
from diffusekit import state as st
from diffusekit.errors import CompatibilityError

STEPS = 3


#: parameters for components that have required ones
REQUIRED = {("process", "masked"): {"vocab_size": 5}}


def _build(kind: str, name: str):
    spec = dk.registry().get(kind, name)
    params = dict(REQUIRED.get((kind, name), {}))
    fields = getattr(spec.config, "model_fields", {}) if spec.config is not None else {}
    if kind == "sampler" and "steps" in fields:
        params["steps"] = STEPS
    try:
        return dk.create(kind, {"name": name, **params})
    except dk.ConfigError:
        return None


#: samplers that expect another layout of the process's condition: how to build it from the
#: conformance example's condition (StoRM stacks [y, y_hat], y_hat from a predictive model)
CONDITION_LAYOUT = {"storm": lambda y: torch.stack([y, y], 1)}


def _guidance_needing_user_data() -> set[str]:
    # observations or models supplied by the user per call (see each guidance's docs)
    return {"inpaint", "colorize", "dps", "classifier", "smc", "svdd"}


def matrix():
    reg = dk.registry()
    processes = {n: _build("process", n) for n in reg.names("process")}
    params = {n: _build("parameterization", n) for n in reg.names("parameterization")}
    samplers = reg.names("sampler")
    guides = [None] + [g for g in reg.names("guidance") if g not in _guidance_needing_user_data()]
    return processes, params, samplers, guides


def run_matrix():
    processes, params, samplers, guides = matrix()
    accepted, refused, failures = [], [], []
    for (pname, proc), (qname, par), sname, gname in itertools.product(
            processes.items(), params.items(), samplers, guides):
        if proc is None or par is None:
            continue
        sampler = _build("sampler", sname)
        guidance = None if gname is None else _build("guidance", gname)
        if sampler is None or (gname is not None and guidance is None):
            continue
        combo = (pname, qname, sname, gname)
        gen = torch.Generator().manual_seed(0)
        x0, cond = proc.conformance_example(4, gen) or (proc.prior(4, (3,), generator=gen), None)
        if sname in CONDITION_LAYOUT and torch.is_tensor(cond):
            cond = CONDITION_LAYOUT[sname](cond)
        net = proc.conformance_network(par)
        try:
            pipe = dk.Pipeline(process=proc, network=net, parameterization=par, sampler=sampler,
                               guidance=guidance, sample_shape=st.shape_of(x0))
        except CompatibilityError as exc:
            msg = str(exc)
            if not any(w in msg for w in ("fit", "use ", "Use ", "add ")):
                failures.append((combo, f"refusal names no fix: {msg}"))
            refused.append(combo)
            continue
        except Exception as exc:  # noqa: BLE001
            failures.append((combo, f"construction raised {type(exc).__name__}: {exc}"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = pipe.sample(4, cond=cond, generator=[0, 1, 2, 3])
        except Exception as exc:  # noqa: BLE001
            failures.append((combo, f"accepted but sampling raised {type(exc).__name__}: {exc}"))
            continue
        if st.shape_of(out) != st.shape_of(x0):
            failures.append((combo, f"structure {st.shape_of(out)} != {st.shape_of(x0)}"))
        elif not st.all_finite(out):
            failures.append((combo, "non-finite samples"))
        else:
            accepted.append(combo)
    return accepted, refused, failures


@pytest.mark.slow
def test_fit_matrix():
    accepted, refused, failures = run_matrix()
    assert not failures, "\n".join(f"{c}: {m}" for c, m in failures[:40]) + f"\n({len(failures)} in all)"
    assert accepted and refused
    print(f"fit matrix: {len(accepted)} accepted (all sample), {len(refused)} refused")


def test_sb_refuses_every_generic_gaussian_solver():
    """The pinned bridge (c = 0 at t = 1) is refused by solvers that divide by c there."""
    proc = dk.create("process", "sb")
    for name in ("ddim", "dpm-solver++", "deis", "unipc", "heun", "euler", "ode", "ddim-renoise"):
        if ("sampler", name) not in dk.registry():
            continue
        with pytest.raises(CompatibilityError, match="PinnedBridge.*samplers that fit: .*sb-ode"):
            dk.Pipeline(process=proc, network=torch.nn.Identity(), parameterization="sgmse-x0",
                        sampler={"name": name})


def test_sample_with_another_sampler_is_checked_like_construction():
    pipe = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                       parameterization="eps", sampler={"name": "ddim", "steps": 3})
    with pytest.raises(CompatibilityError, match="samplers that fit"):
        pipe.sample(2, sampler={"name": "first-hitting"})


def test_sample_with_another_sampler_rechecks_guidance_fit():
    """CFG++ needs a sampler that renoises with the guided estimate: construction refuses
    EDM's heun, and so does sample(sampler=...) (the same fit check, guidance included)."""
    spec = {"process": "vp", "parameterization": "eps",
            "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1, "num_classes": 3},
            "conditioner": {"name": "label", "num_classes": 3}, "guidance": {"name": "cfg++"}}
    with pytest.raises(CompatibilityError, match="cfg\\+\\+"):
        dk.Pipeline(**spec, sampler={"name": "heun", "steps": 3})
    pipe = dk.Pipeline(**spec, sampler={"name": "ddim-renoise", "steps": 3})
    labels = torch.tensor([0, 1])
    assert pipe.sample(2, cond=labels, generator=[0, 1]).shape == (2, 2)
    with pytest.raises(CompatibilityError, match="cfg\\+\\+"):
        pipe.sample(2, cond=labels, sampler={"name": "heun", "steps": 3})
    # every multistep Gaussian solver renoises with the guided estimate
    assert pipe.sample(2, cond=labels, sampler={"name": "dpm-solver++", "steps": 3}).shape == (2, 2)
    # guidance swapped per call is checked too: cfg++ on a pipeline whose sampler does not renoise
    plain = dk.Pipeline(**{**spec, "guidance": None}, sampler={"name": "heun", "steps": 3})
    with pytest.raises(CompatibilityError, match="cfg\\+\\+"):
        plain.sample(2, cond=labels, guidance={"name": "cfg++"})
    assert plain.sample(2, cond=labels, guidance={"name": "cfg", "scale": 2.0}).shape == (2, 2)
