"""Reference networks: time-embedded MLP and the DDPM++-style U-Net."""

import pytest
import torch

import diffusekit as dk


@pytest.mark.parametrize("size,mult,ch", [(8, [1, 2], 1), (16, [1, 2, 2], 1), (32, [1, 2, 2, 2], 3)])
def test_unet_shapes_and_example_inputs(size, mult, ch):
    net = dk.create("network", "unet", channels=ch, image_size=size, base=16, ch_mult=mult, num_res_blocks=1,
                    attn_resolutions=[size // 2])
    assert net.sample_shape == (ch, size, size)
    x, t, cond = net.example_inputs(3)
    assert net(x, t, cond).shape == x.shape


def test_unet_is_per_sample_and_time_conditioned():
    """Eval mode: a sample's output does not depend on the rest of the batch (GroupNorm, no
    BatchNorm) and changes with t."""
    torch.manual_seed(0)
    net = dk.create("network", "unet", base=16, ch_mult=[1, 2], num_res_blocks=1).eval()
    for p in net.parameters():  # zero-initialised output layers would hide the time path
        torch.nn.init.normal_(p, std=0.05)
    x, t, _ = net.example_inputs(4)
    full = net(x, t)
    torch.testing.assert_close(net(x[1:2], t[1:2]), full[1:2], atol=1e-5, rtol=1e-5)
    assert (net(x, t * 0.5) - full).abs().max() > 1e-4


def test_unet_class_conditional_and_errors():
    net = dk.create("network", "unet", base=16, ch_mult=[1, 2], num_res_blocks=1, num_classes=10)
    x, t, cond = net.example_inputs(2)
    assert cond.shape == (2,) and net(x, t, cond).shape == x.shape
    assert net(x, t, None).shape == x.shape  # null label
    with pytest.raises(dk.ConfigError, match="image_size"):
        dk.create("network", "unet", image_size=10, ch_mult=[1, 2, 2])


def test_mlp_input_features():
    net = dk.create("network", "mlp", dim=3, hidden=32, input_features=16)
    x, t, _ = net.example_inputs(5)
    assert net(x, t).shape == (5, 3)
    assert net.inp.in_features == 3 + 3 * 16


def test_unet_trains_in_a_pipeline():
    """Loss decreases over a few steps on digits (smoke test of the wiring, 1 thread)."""
    pipe = dk.Pipeline.from_config({"process": "vp", "parameterization": "eps",
                                    "network": {"name": "unet", "base": 8, "ch_mult": [1, 2], "num_res_blocks": 1,
                                                "attn_resolutions": []}})
    x = dk.create("dataset", "digits", split="test")[:64]
    res = dk.train(pipe, x, steps=20, batch_size=16, lr=3e-3, ema=None)
    assert sum(res.losses[-5:]) < sum(res.losses[:5])
    assert pipe.sample(2, sampler={"name": "reverse-diffusion", "steps": 3}).shape == (2, 1, 8, 8)
