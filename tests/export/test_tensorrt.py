"""TensorRT exporter: what can be checked without a GPU (profiles, build configuration, cache
keys, commands, the CPU export path) plus a real engine build under ``-m gpu``."""

from __future__ import annotations

import json

import pytest
import torch
from onnx import TensorProto, helper

import diffusekit as dk
from diffusekit.errors import CompatibilityError, ConfigError

from diffusekit_tensorrt.build_config import BuildConfig
from diffusekit_tensorrt.profiles import derive_profile


def _model(example=None):
    """A hand-built graph with a symbolic batch and two symbolic spatial dims."""
    x = helper.make_tensor_value_info("x_t", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    t = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch"])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    g = helper.make_graph([helper.make_node("Identity", ["x_t"], ["out"])], "g", [x, t], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    if example:
        m.metadata_props.add(key="diffusekit.example_shapes", value=json.dumps(example))
    return m


def test_profile_from_symbolic_dims():
    p = derive_profile(_model(), 1, 8, 64, dims={"h": (8, 16, 32), "w": (8, 16, 32)})
    assert p.shapes["x_t"] == ((1, 1, 8, 8), (8, 1, 16, 16), (64, 1, 32, 32))
    assert p.shapes["t"] == ((1,), (8,), (64,))
    assert p.flag(0) == "x_t:[1,1,8,8],t:[1]"
    assert p.trtexec(2) == "x_t:64x1x32x32,t:64"


def test_profile_defaults_to_the_verified_example_size():
    from diffusekit_onnx import metadata

    m = _model({"x_t": [2, 1, 12, 20], "t": [2]})
    p = derive_profile(m, 2, 4, 16, example_shapes=metadata.read(m)["example_shapes"])
    assert p.shapes["x_t"] == ((2, 1, 12, 20), (4, 1, 12, 20), (16, 1, 12, 20))
    with pytest.raises(ConfigError, match="'h'"):  # unknown size and no dims: say which dim to give
        derive_profile(_model(), 1, 1, 1)
    with pytest.raises(ConfigError, match="not symbolic dims"):
        derive_profile(_model(), 1, 1, 1, dims={"h": (1, 1, 1), "w": (1, 1, 1), "depth": (1, 2, 3)})


def test_options_validate_profile_order():
    with pytest.raises(ConfigError, match="min_batch <= opt_batch <= max_batch"):
        dk.create("exporter", "tensorrt").export(None, "m.engine", min_batch=8, opt_batch=4)
    with pytest.raises(ConfigError, match=r"dims\['h'\]"):
        dk.create("exporter", "tensorrt").export(None, "m.engine", dims={"h": (4, 2, 8)})


def test_cache_key_tracks_content_and_settings():
    p = derive_profile(_model(), 1, 8, 64, dims={"h": (8, 8, 8), "w": (8, 8, 8)})
    base = BuildConfig("a.onnx", p)
    k = base.cache_key(b"model-bytes", "10.0", "H100")
    assert k == BuildConfig("elsewhere/a.onnx", p).cache_key(b"model-bytes", "10.0", "H100")  # paths don't matter
    others = [base.cache_key(b"model-bytez", "10.0", "H100"),
              BuildConfig("a.onnx", p, fp16=True).cache_key(b"model-bytes", "10.0", "H100"),
              BuildConfig("a.onnx", p, bf16=True).cache_key(b"model-bytes", "10.0", "H100"),
              BuildConfig("a.onnx", derive_profile(_model(), 1, 8, 128, dims={"h": (8, 8, 8), "w": (8, 8, 8)})
                          ).cache_key(b"model-bytes", "10.0", "H100"),
              base.cache_key(b"model-bytes", "10.1", "H100"), base.cache_key(b"model-bytes", "10.0", "A100")]
    assert len({k, *others}) == len(others) + 1


def test_polygraphy_and_trtexec_commands():
    p = derive_profile(_model(), 1, 8, 64, dims={"h": (8, 16, 32), "w": (8, 16, 32)})
    cfg = BuildConfig("m.onnx", p, fp16=True, workspace_mb=1024, timing_cache="tc.cache")
    poly = cfg.polygraphy_command("m.engine")
    assert poly[:6] == ["polygraphy", "convert", "m.onnx", "--convert-to", "trt", "-o"]
    i = poly.index("--trt-opt-shapes")
    assert poly[i + 1:i + 3] == ["x_t:[8,1,16,16]", "t:[8]"]
    assert "--fp16" in poly and "--bf16" not in poly and "--save-timing-cache" in poly
    trt = cfg.trtexec_command("m.engine")
    assert "--maxShapes=x_t:64x1x32x32,t:64" in trt and "--memPoolSize=workspace:1024M" in trt
    assert "--timingCacheFile=tc.cache" in trt


@pytest.fixture(scope="module")
def small_pipe():
    torch.manual_seed(0)
    return dk.Pipeline.from_config({"process": {"name": "vp"}, "parameterization": "eps",
                                    "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                                    "sampler": {"name": "ode", "method": "euler", "steps": 4}})


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_cpu_export_writes_verified_onnx_and_build_plan(small_pipe, tmp_path):
    report = dk.export(small_pipe, "tensorrt", tmp_path / "model.engine", fp16=True, max_batch=32)
    assert not report.built and report.engine is None and "NVIDIA GPU" in report.reason
    assert (tmp_path / "model.onnx").exists() and report.onnx["max_abs_err"] <= 1e-4
    plan = json.loads((tmp_path / "tensorrt_build.json").read_text())
    assert plan["build"]["profile"]["x_t"] == {"min": [1, 2], "opt": [8, 2], "max": [32, 2]}
    assert plan["cache_key"] == report.cache_key and "--fp16" in plan["polygraphy"]
    with pytest.raises(CompatibilityError, match="NVIDIA GPU"):
        dk.export(small_pipe, "tensorrt", tmp_path / "model.engine", build="always")
    with pytest.raises(ConfigError, match=r"\.engine"):
        dk.export(small_pipe, "tensorrt", tmp_path / "model.onnx")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_engine_build_cache_and_parity(small_pipe, tmp_path):  # pragma: no cover - GPU only
    pytest.importorskip("tensorrt")
    from diffusekit_tensorrt.runtime import TensorRTModule

    report = dk.export(small_pipe, "tensorrt", tmp_path / "model.engine", max_batch=32)
    assert report.built and not report.cache_hit
    again = dk.export(small_pipe, "tensorrt", tmp_path / "model.engine", max_batch=32)
    assert again.cache_hit and again.cache_key == report.cache_key
    mod = TensorRTModule(tmp_path / "model.engine")
    x, t = torch.randn(5, 2), torch.rand(5) * 0.9 + 0.05
    got = mod.run(x, t)[0].cpu()
    with torch.no_grad():
        ref = small_pipe.network(x, t)
    assert torch.allclose(got, ref, atol=1e-3, rtol=1e-3)
