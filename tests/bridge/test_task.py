"""Moving digits, the video network, the neural prior, the GIF writer and the recipes."""

import subprocess
import sys

import pytest
import torch

import diffusekit as dk
from diffusekit_bridge.data import VELOCITIES, generate, moving_digits, trajectories
from diffusekit_bridge.networks import VideoUNet
from diffusekit_bridge.prior import NeuralPrior, prior_condition
from diffusekit_bridge.writers import gif_frames, write_gif_strip


@pytest.fixture(scope="module")
def videos():
    return moving_digits(n=64, frames=5, size=16, labels=True)


def test_moving_digits_shapes_and_condition(videos):
    x, (first, cls) = videos.x, videos.cond
    assert x.shape == (64, 5, 1, 16, 16) and first.shape == (64, 1, 16, 16) and cls.shape == (64,)
    assert torch.equal(first, x[:, 0])
    assert x.min() >= -1 and x.max() <= 1
    again = moving_digits(n=64, frames=5, size=16)
    assert torch.equal(again.x, x)  # deterministic
    test = moving_digits(n=64, frames=5, size=16, split="test")
    assert not torch.equal(test.x, x)


def test_motion_is_a_translation_fixed_by_the_first_frame(videos):
    """Every frame is the digit of frame 0 pasted at the position its class velocity gives
    (reflected at the border); the whole digit stays visible, so frame k is an exact integer
    translate of frame 0."""
    x, _, pos, imgs = generate(64, 5, 16, "train", 0)
    cls = videos.cond[1]
    assert torch.equal(x, videos.x)
    torch.testing.assert_close(pos, trajectories(pos[:, 0], VELOCITIES[cls], 5, 8), rtol=0, atol=0)
    for i in range(64):
        r0, c0 = (int(v) for v in pos[i, 0])
        for k in range(5):
            r, c = (int(v) for v in pos[i, k])
            assert torch.equal(x[i, k, 0, r:r + 8, c:c + 8], imgs[i, 0])
            shifted = torch.full((16, 16), -1.0)
            shifted[r:r + 8, c:c + 8] = x[i, 0, 0, r0:r0 + 8, c0:c0 + 8]
            assert torch.equal(x[i, k, 0], shifted)
    ink = (x + 1).sum((2, 3, 4))
    torch.testing.assert_close(ink, ink[:, :1].expand_as(ink))


def test_trajectories_reflect_inside_the_canvas():
    start = torch.tensor([[0, 8], [7, 1]])
    vel = torch.tensor([[2, 1], [-1, -1]])
    pos = trajectories(start, vel, 12, 8)
    assert pos.min() >= 0 and pos.max() <= 8
    steps = (pos[:, 1:] - pos[:, :-1]).abs()
    assert (steps <= vel.abs().unsqueeze(1)).all()


def test_video_network_and_neural_prior():
    net = VideoUNet(frames=5, size=16, base=8)
    x, t, cond = net.example_inputs(3)
    assert net(x, t, cond).shape == x.shape
    assert net.sample_shape == (5, 1, 16, 16)
    with torch.no_grad():
        out = VideoUNet(frames=5, size=16, base=8, use_x1=True)(x, t, {"image": cond, "x1": x})
    assert out.shape == x.shape
    with pytest.raises(dk.ConfigError, match="use_x1"):
        VideoUNet(frames=5, size=16, base=8, use_x1=True)(x, t, cond)
    prior = NeuralPrior(frames=5, size=16, base=8)
    c = prior_condition(prior, cond)
    assert c["x1"].shape == (3, 5, 1, 16, 16)
    # the residual output starts at zero: an untrained prior replicates the first frame
    torch.testing.assert_close(c["x1"], cond.unsqueeze(1).expand(3, 5, 1, 16, 16))


def test_gif_strip(tmp_path, videos):
    frames = gif_frames(videos.x[:3])
    assert frames.shape == (5, 16 * 4, 3 * 17 * 4)
    path = tmp_path / "strip.gif"
    write_gif_strip(path, videos.x[:3])
    from PIL import Image

    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (3 * 17 * 4, 16 * 4)
    from diffusekit.writers import WriteContext, write_samples

    out = tmp_path / "w.gif"
    msg = write_samples(out, videos.x[:4], WriteContext(pipe=None))
    assert "GIF" in msg and out.exists()


@pytest.mark.parametrize("recipe", ["framebridge-digits", "diffusion-i2v-digits"])
def test_recipes_build(recipe):
    cfg = dk.registry().get("recipe", recipe).obj()
    sampler = cfg["sampler"]["name"]
    if ("sampler", sampler) not in dk.registry():
        pytest.skip(f"sampler {sampler} of the recipe is not installed")
    cfg = {k: v for k, v in cfg.items() if k not in ("data", "train")}
    pipe = dk.Pipeline.from_config(cfg)
    assert pipe.sample_shape == (5, 1, 16, 16)


@pytest.mark.slow
def test_cli_train_and_sample_a_gif(tmp_path):
    """``diffusekit train framebridge-digits`` then ``diffusekit sample RUN --out x.gif`` (first
    frames drawn from held-out moving digits)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffusekit", "train", "framebridge-digits", "--out", str(run), "--steps", "3",
           "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    gif = tmp_path / "strip.gif"
    res = subprocess.run([sys.executable, "-m", "diffusekit", "sample", str(run), "--n", "4", "--out", str(gif),
                          "--quiet"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 5
