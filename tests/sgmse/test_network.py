"""NCSN++-style U-Net: complex and real interfaces agree, presets, ONNX export (real interface)."""

import pytest
import torch

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit_sgmse.networks import PRESETS, NCSNpp

SMALL = dict(preset="custom", nf=8, ch_mult=(1, 2), n_freq=16, frames=16)


def test_complex_and_real_interfaces_agree():
    net = NCSNpp(**SMALL).eval()
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)  # the output conv starts at zero
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 16, dtype=torch.complex64, generator=g)
    y = torch.randn(2, 16, 16, dtype=torch.complex64, generator=g)
    t = torch.tensor([0.1, 0.9])
    out_c = net(x, t, y)
    out_r = net(NCSNpp.to_channels(x), t, NCSNpp.to_channels(y))
    assert out_c.dtype == torch.complex64 and out_c.shape == x.shape
    assert torch.allclose(torch.view_as_real(out_c).permute(0, 3, 1, 2), out_r, atol=1e-6)
    assert out_c.abs().max() > 0


def test_example_inputs_are_real_and_storm_takes_two_conditions():
    net = NCSNpp(**SMALL, cond_channels=2)
    x, t, c = net.example_inputs(3)
    assert not torch.is_complex(x) and x.shape == (3, 2, 16, 16) and c.shape == (3, 4, 16, 16)
    assert net(x, t, c).shape == (3, 2, 16, 16)


def test_presets_sizes():
    assert set(PRESETS) == {"ncsnpp-mini", "ncsnpp6M", "ncsnpp12M", "ncsnpp", "ncsnpp-full"}
    n_params = sum(p.numel() for p in NCSNpp(preset="ncsnpp-mini").parameters())
    assert 0.5e6 < n_params < 5e6
    with pytest.raises(ConfigError, match="preset"):
        dk.create("network", "ncsnpp", preset="huge")


@pytest.mark.slow  # dynamo export: ~15 s alone, minutes on a loaded machine (tests/export covers every network)
def test_onnx_export_with_real_interface(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    if ("exporter", "onnx") not in dk.registry():
        pytest.skip("the onnx exporter plugin is not installed")
    pipe = dk.Pipeline(process="ouve", network={"name": "ncsnpp", **SMALL}, parameterization="sgmse-score",
                       sampler="sgmse-pc")
    torch.nn.init.normal_(pipe.network.out[-1].weight, std=0.1)
    report = dk.export(pipe, "onnx", str(tmp_path / "model.onnx"))
    assert report.max_abs_err < 1e-4
    import onnx

    model = onnx.load(str(tmp_path / "model.onnx"))
    for inp in model.graph.input:
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # real-valued interface
