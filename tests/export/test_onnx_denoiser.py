"""ONNX denoiser export: verification report, metadata, onnxruntime backend, CFG folding,
fp16, provider fallback and readable export errors."""

from __future__ import annotations


import onnx
import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit.errors import ConfigError, DiffusekitError

from diffusekit_onnx import metadata
from diffusekit_onnx.runtime import OrtModule
from diffusekit_onnx.trace import OnnxExportError

BASE = {
    "process": {"name": "vp"},
    "parameterization": "eps",
    "network": {"name": "mlp", "dim": 2, "hidden": 32, "depth": 2},
    "sampler": {"name": "ode", "method": "heun", "steps": 8},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    pipe = dk.Pipeline.from_config(BASE)
    d = tmp_path_factory.mktemp("onnx_run")
    pipe.save(d)
    report = dk.export(pipe, "onnx", d / "model.onnx")
    return pipe, d, report


def test_report_parity_two_shapes_and_contract(exported):
    pipe, d, report = exported
    assert report.max_abs_err <= 1e-4 and report.atol == 1e-4 and report.rtol == 1e-4
    assert len(report.shapes) == 2 and report.shapes[0][0] != report.shapes[1][0]
    assert report.opset == 20 and report.ir_version <= 10
    assert report.file_size == (d / "model.onnx").stat().st_size > 0
    assert report.providers == ["CPUExecutionProvider"]
    assert report.outputs == ["eps", "x0"] and report.inputs == ["x_t", "t"]
    for name in ("x_t", "t", "eps", "x0"):  # batch stays symbolic, the feature dim is static
        assert report.dynamic_dims[name][0] == "batch"
    assert report.dynamic_dims["x_t"][1] == "2"
    d_ = report.as_dict()
    for key in ("max_abs_err", "max_rel_err", "opset", "ir_version", "file_size", "providers",
                "export_seconds", "verify_seconds"):
        assert key in d_


def test_metadata_versions_opset_config(exported):
    pipe, d, _ = exported
    meta = metadata.read(d / "model.onnx")
    assert meta["mode"] == "denoiser" and meta["opset"] == 20
    assert meta["pipeline"] == pipe.config
    assert {"torch", "onnx", "diffusekit", "python"} <= set(meta["versions"])
    assert meta["weights_sha256"] == metadata.weights_hash(pipe)
    onnx.checker.check_model(str(d / "model.onnx"), full_check=True)


def test_x0_output_is_parameterization_conversion(exported):
    """The graph's x0 output equals the Prediction's conversion x0 = (x - c eps) / a."""
    pipe, d, _ = exported
    ort = OrtModule(d / "model.onnx")
    x = torch.randn(7, 2)
    t = torch.linspace(0.01, 0.99, 7)
    eps, x0 = ort.run(x, t)
    a, _, c = pipe.process.coefficients(t)
    assert torch.allclose(x0, (x - c[:, None] * eps) / a[:, None], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        ref = pipe.denoiser(guided=False)(x, t)
    assert torch.allclose(x0, ref.x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler", [{"name": "ode", "method": "heun", "steps": 8},
                                     {"name": "euler-maruyama", "steps": 20},
                                     {"name": "ddim", "steps": 10},
                                     {"name": "dpm-solver++", "steps": 10}])
def test_onnxruntime_backend_sampling_equals_torch(exported, sampler):
    if ("sampler", sampler["name"]) not in dk.registry():
        pytest.skip(f"sampler {sampler['name']} not registered")
    pipe, d, _ = exported
    ort = dk.Pipeline.load(d, backend="onnxruntime")
    assert ort.network.providers == ["CPUExecutionProvider"]
    gens = lambda: [torch.Generator().manual_seed(s) for s in range(16)]  # noqa: E731
    x_t = pipe.sample(16, generator=gens(), sampler=sampler)
    x_o = ort.sample(16, generator=gens(), sampler=sampler)
    assert ort.last_nfe == pipe.last_nfe
    assert (x_t - x_o).abs().max() <= 1e-3


def test_requesting_cuda_on_cpu_reports_fallback(exported):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA provider may really load")
    _, d, _ = exported
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider"):
        mod = OrtModule(d / "model.onnx", device="cuda")
    assert mod.providers == ["CPUExecutionProvider"]
    assert mod.fallback == ["CUDAExecutionProvider"]
    assert not mod.on_cuda
    with pytest.warns(RuntimeWarning):
        ort = dk.Pipeline.load(d, backend="onnxruntime", providers=["cuda"])
    assert ort.network.fallback == ["CUDAExecutionProvider"]


def test_stale_export_is_refused(exported, tmp_path):
    pipe, d, _ = exported
    other = dk.Pipeline.from_config(BASE)  # fresh random weights
    other.save(tmp_path)
    (tmp_path / "model.onnx").write_bytes((d / "model.onnx").read_bytes())
    with pytest.raises(ConfigError, match="different weights"):
        dk.Pipeline.load(tmp_path, backend="onnxruntime")
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ConfigError, match="export first"):
        dk.Pipeline.load(tmp_path, backend="onnxruntime")


def test_bad_options_are_named(exported, tmp_path):
    pipe, _, _ = exported
    with pytest.raises(ConfigError, match="export.*bogus"):
        dk.export(pipe, "onnx", tmp_path / "m.onnx", bogus=1)
    with pytest.raises(ConfigError, match="mode"):
        dk.export(pipe, "onnx", tmp_path / "m.onnx", mode="everything")
    with pytest.raises(ConfigError, match=r"\.onnx"):
        dk.export(pipe, "onnx", tmp_path / "m.bin")


class DataDependent(dk.Network):
    """A network with data-dependent control flow (cannot be captured in a static graph)."""

    def __init__(self):
        super().__init__()
        self.inner = Branchy()
        self.sample_shape = (2,)

    def forward(self, x, t, cond=None):
        return self.inner(x, t)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x, t):
        h = self.lin(x)
        if h.sum() > 0:
            return h * 2
        return h - t[:, None]


def test_unexportable_network_fails_with_named_operator_and_module(tmp_path):
    pipe = dk.Pipeline(process="vp", network=DataDependent(), parameterization="eps",
                       sampler={"name": "ode", "method": "euler", "steps": 2})
    with pytest.raises(OnnxExportError) as info:
        dk.export(pipe, "onnx", tmp_path / "bad.onnx")
    err = info.value
    assert isinstance(err, DiffusekitError)
    msg = str(err)
    assert "data-dependent" in msg and "if h.sum() > 0" in msg
    assert err.module is not None and "Branchy" in err.module and "inner" in err.module
    assert len(msg) < 800, msg  # one readable paragraph, not the exporter's internals


def test_cfg_folded_as_one_batched_call(tmp_path):
    pytest.importorskip("diffusekit_guidance")
    if ("guidance", "cfg") not in dk.registry():
        pytest.skip("cfg guidance not registered")
    torch.manual_seed(1)
    cfg = {**BASE, "network": {**BASE["network"], "num_classes": 3},
           "conditioner": {"name": "label", "num_classes": 3}, "guidance": {"name": "cfg", "scale": 2.5}}
    pipe = dk.Pipeline.from_config(cfg)
    pipe.save(tmp_path)
    report = dk.export(pipe, "onnx", tmp_path / "model.onnx")
    assert report.inputs == ["x_t", "t", "cond"] and report.extra["guidance_scale"] == 2.5
    assert report.max_abs_err <= 1e-4
    # the graph's eps is the guided eps of the Python CFG wrapper
    x, t, c = torch.randn(6, 2), torch.rand(6) * 0.9 + 0.05, torch.tensor([0, 1, 2, 2, 1, 0])
    eps, _ = OrtModule(tmp_path / "model.onnx").run(x, t, c)
    with torch.no_grad():
        ref = pipe.denoiser()(x, t, c).eps
        uncond = pipe.denoiser(guided=False)(x, t, torch.full_like(c, 3)).eps
    assert torch.allclose(eps, ref, atol=1e-4, rtol=1e-4)
    assert (eps - uncond).abs().max() > 1e-2  # guidance really is in the graph
    ort = dk.Pipeline.load(tmp_path, backend="onnxruntime")
    assert ort.guidance == []  # folded into the graph
    assert ort.conditioner(c) is c and torch.equal(ort.conditioner.null(c), torch.full_like(c, 3))
    g = lambda: [torch.Generator().manual_seed(s) for s in range(6)]  # noqa: E731
    x_t = pipe.sample(6, cond=c, generator=g())
    x_o = ort.sample(6, cond=c, generator=g())
    assert (x_t - x_o).abs().max() <= 1e-3


@pytest.mark.slow
def test_fp16_export_has_its_own_tolerances(exported, tmp_path):
    pipe, _, _ = exported
    report = dk.export(pipe, "onnx", tmp_path / "m16.onnx", fp16=True)
    assert report.fp16 and report.atol == 1e-2 and report.rtol == 1e-2
    assert report.max_abs_err <= 5e-2
    model = onnx.load(str(tmp_path / "m16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # IO stays fp32


@pytest.mark.slow
def test_cli_export_prints_the_report(exported, tmp_path, capsys):
    import json

    from diffusekit.cli import main

    _, d, _ = exported
    rc = main(["export", str(d), "--format", "onnx", "--out", str(tmp_path / "cli.onnx")])
    assert rc in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "denoiser" and out["max_abs_err"] <= 1e-4 and out["path"].endswith("cli.onnx")


@pytest.mark.slow
def test_onnxruntime_backend_samples_token_states(tmp_path):
    """Integer (masked-diffusion) states: the ORT network must return float logits."""
    import diffusekit as dk

    if ("process", "masked") not in dk.registry():
        pytest.skip("masked plugin not installed")
    net = dk.create("network", "transformer", vocab_size=3, seq_len=4, dim=16, depth=1, heads=2)
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=net, parameterization="logits",
                       sampler={"name": "first-hitting"}, sample_shape=(4,))
    pipe.save(tmp_path)
    dk.export(pipe, "onnx", tmp_path / "model.onnx")
    ort_pipe = dk.Pipeline.load(tmp_path, backend="onnxruntime")
    a = pipe.sample(6, generator=[torch.Generator().manual_seed(s) for s in range(6)])
    b = ort_pipe.sample(6, generator=[torch.Generator().manual_seed(s) for s in range(6)])
    assert b.dtype == torch.long and torch.equal(a, b)
