"""ONNX denoiser export of a dict state: one named graph input / output per state leaf.

A Product process written only in this file (two independent ``vp`` components over
``{"a": (B, 3), "b": (B, 2, 2)}``) with a dict-in / dict-out network exports with inputs
``x_t.a``, ``x_t.b``, ``t`` and outputs ``eps.a``, ``eps.b`` (dotted leaf names of
``diffusekit.state.flatten``), a symbolic batch on every leaf and onnxruntime matching PyTorch;
``Pipeline.load(dir, backend="onnxruntime")`` rebuilds the dict output and samples like PyTorch.
"""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit import state as st
from diffusekit.network import Network
from diffusekit.process import ProductProcess

from diffusekit_onnx import metadata
from diffusekit_onnx.runtime import OrtModule
from diffusekit_onnx.verify import symbolic_dims

SHAPE = {"a": (3,), "b": (2, 2)}


class TwoVP(ProductProcess):
    """Two independent VP components sharing the time t."""

    def __init__(self, **params):
        super().__init__(**params)
        self._parts = {"a": dk.create("process", "vp"), "b": dk.create("process", "vp")}

    @property
    def components(self):
        return self._parts


class DictNet(Network):
    """Joint dict-in / dict-out MLP (both keys see the whole state and the time)."""

    sample_shape = SHAPE

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 + 4 + 2, 32), nn.SiLU(), nn.Linear(32, 7))

    def forward(self, x, t, cond=None):
        emb = torch.stack([torch.sin(3 * t), torch.cos(3 * t)], 1).to(x["a"].dtype)
        out = self.net(torch.cat([x["a"], x["b"].flatten(1), emb], 1))
        # keys deliberately in reverse order: graph outputs follow the sorted leaf names
        return {"b": out[:, 3:].reshape(-1, 2, 2), "a": out[:, :3]}

    def example_inputs(self, batch: int):
        return {"a": torch.randn(batch, 3), "b": torch.randn(batch, 2, 2)}, torch.rand(batch) * 0.9 + 0.05, None


@pytest.fixture
def registry(sde_registry):
    reg = sde_registry.registry
    reg.register("process", "test-two-vp", TwoVP)
    reg.register("network", "test-dict-net", DictNet)
    return sde_registry


def make_pipe(sampler=None):
    torch.manual_seed(0)
    return dk.Pipeline(process="test-two-vp", network="test-dict-net", parameterization="eps",
                       sampler=sampler or {"name": "euler-maruyama", "steps": 4})


@pytest.fixture
def exported(registry, tmp_path):
    pipe = make_pipe()
    pipe.save(tmp_path)
    report = dk.export(pipe, "onnx", tmp_path / "model.onnx")
    return pipe, tmp_path, report


def batch(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = {"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, 2, 2, generator=g)}
    return x, 0.05 + 0.9 * torch.rand(n, generator=g)


def test_one_named_input_and_output_per_leaf_with_symbolic_batch(exported):
    pipe, d, report = exported
    model = onnx.load(str(d / "model.onnx"))
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    assert inputs == ["x_t.a", "x_t.b", "t"] == report.inputs
    assert outputs == ["eps.a", "eps.b"] == report.outputs
    assert inputs[:2] == list(st.flatten(pipe.network.example_inputs(1)[0], "x_t"))
    dims = symbolic_dims(model)
    assert dims == report.dynamic_dims
    for name in inputs + outputs:  # the batch stays symbolic on every leaf, feature dims static
        assert dims[name][0] == "batch", (name, dims[name])
    assert dims["x_t.a"][1:] == dims["eps.a"][1:] == ["3"]
    assert dims["x_t.b"][1:] == dims["eps.b"][1:] == ["2", "2"]
    # verified on two batches, per-leaf shapes recorded
    assert report.max_abs_err <= 1e-4 and len(report.shapes) == 2
    assert report.shapes[0] == {"a": [2, 3], "b": [2, 2, 2]} and report.shapes[1]["a"][0] == 5
    meta = metadata.read(d / "model.onnx")
    assert meta["inputs"] == inputs and meta["outputs"] == outputs
    assert meta["raw_outputs"] == ["eps.a", "eps.b"] and meta["raw_output_shape"] == {"a": [3], "b": [2, 2]}
    assert meta["example_shapes"] == {"x_t.a": [2, 3], "x_t.b": [2, 2, 2], "t": [2]}


def test_onnxruntime_matches_torch_leaf_by_leaf(exported):
    pipe, d, _ = exported
    ort = OrtModule(d / "model.onnx")
    x, t = batch(7, 3)
    got = ort.run_named({**st.flatten(x, "x_t"), "t": t})
    with torch.no_grad():
        ref = pipe.denoiser(guided=False)(x, t).eps
    assert set(got) == {"eps.a", "eps.b"}
    for name, leaf in st.flatten(ref, "eps").items():
        assert got[name].shape == leaf.shape
        assert torch.allclose(got[name], leaf, atol=1e-5, rtol=1e-4), name
    assert torch.allclose(ort.run(x["a"], x["b"], t)[1], ref["b"], atol=1e-5, rtol=1e-4)  # positional order


def test_onnxruntime_backend_rebuilds_the_dict_and_samples(exported):
    pipe, d, _ = exported
    ort = dk.Pipeline.load(d, backend="onnxruntime")
    assert ort.network.providers == ["CPUExecutionProvider"]
    assert ort.network.sample_shape == ort.sample_shape == SHAPE
    x, t = batch(5, 4)
    with torch.no_grad():
        a = pipe.denoiser(guided=False)(x, t)
        b = ort.denoiser(guided=False)(x, t)
    assert set(b.eps) == {"a", "b"}
    for k in ("a", "b"):
        assert b.eps[k].shape == a.eps[k].shape and b.eps[k].dtype == torch.float32
        assert torch.allclose(b.eps[k], a.eps[k], atol=1e-5, rtol=1e-4)
        assert torch.allclose(b.x0[k], a.x0[k], atol=1e-4, rtol=1e-4)
    samplers = [s for s in ({"name": "euler-maruyama", "steps": 4}, {"name": "pc", "steps": 3})
                if dk.create("sampler", s).supports_product]
    if not samplers:
        pytest.skip("no registered sampler supports Product processes yet; denoiser outputs checked only")
    for spec in samplers:
        seeds = list(range(6))
        x_t = pipe.sample(6, generator=seeds, sampler=spec)
        x_o = ort.sample(6, generator=seeds, sampler=spec)
        assert ort.last_nfe == pipe.last_nfe
        assert set(x_o) == {"a", "b"}
        for k in ("a", "b"):
            assert x_o[k].shape == (6, *SHAPE[k])
            assert torch.allclose(x_o[k], x_t[k], atol=1e-3, rtol=1e-3), (spec, k)


def test_sampler_mode_refuses_dict_states_naming_the_denoiser_mode(registry, tmp_path):
    pipe = make_pipe()
    with pytest.raises(dk.CompatibilityError, match="mode='denoiser'"):
        dk.export(pipe, "onnx", tmp_path / "s.onnx", mode="sampler", method="ddim", steps=2)
