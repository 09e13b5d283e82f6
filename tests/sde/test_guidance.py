"""Replacement inpainting / colorization (Song et al. 2021, appendix I.2) with exact oracles."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture
from diffusekit.testing.oracles import MixtureOracle
from diffusekit_sde.replacement import colour_matrix, couple, decouple


def _pipe(proc, mix, guidance, steps=150):
    return dk.Pipeline(process=proc, network=MixtureOracle(mix, proc), parameterization="x0",
                       sampler={"name": "reverse-diffusion", "steps": steps}, guidance=guidance,
                       sample_shape=(mix.dim,))


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_inpaint_keeps_known_part_and_finds_the_conditional_mode(name):
    """Two modes (-2, -2) and (2, 2): knowing x_1 = +-2 the unknown x_2 lands on the matching
    mode, and the known coordinate equals the observation exactly at the end."""
    mix = GaussianMixture(torch.tensor([[-2.0, -2.0], [2.0, 2.0]]), 0.3)
    n = 400
    y = torch.full((n, 2), 2.0)
    y[: n // 2] = -2.0
    mask = torch.tensor([1.0, 0.0]).expand(n, 2)
    pipe = _pipe(dk.create("process", name), mix, "inpaint")
    x = pipe.sample(n, cond={"image": y, "mask": mask}, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 0], y[:, 0])
    assert float(((x[:, 1] - y[:, 0]).abs() < 1.0).float().mean()) > 0.95
    assert pipe.last_nfe == 150


def test_inpaint_without_observation_is_a_clear_error():
    mix = GaussianMixture.ring()
    pipe = _pipe(dk.create("process", "vp"), mix, "inpaint", steps=5)
    with pytest.raises(dk.ConfigError, match="observation"):
        pipe.sample(4)


def test_colour_matrix_is_orthonormal_with_grey_axis():
    m = colour_matrix()
    torch.testing.assert_close(m.T @ m, torch.eye(3, dtype=torch.float64))
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(couple(decouple(x)), x)
    torch.testing.assert_close(decouple(x)[:, 0], x.mean(1) * math.sqrt(3))


def test_colorize_keeps_grey_and_samples_both_colours():
    """RGB data with two colours of the same grey level: the grey channel is reproduced
    exactly and both colours appear in about equal shares."""
    mix = GaussianMixture(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]), 0.2)
    n = 400
    grey = torch.zeros(n, 1)
    pipe = _pipe(dk.create("process", "vp"), mix, dk.create("guidance", "colorize"))
    x = pipe.sample(n, cond={"grey": grey}, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x.mean(1, keepdim=True), grey, atol=1e-6, rtol=0)
    share = float((x[:, 0] > 0).float().mean())
    assert 0.4 < share < 0.6
    assert float((x[:, :2].abs() - 1).abs().mean()) < 0.3


def test_inpaint_observation_per_call_stays_on_the_bound_copy():
    """A per-call observation (cond) is held by the call's bound copy: the shared guidance object
    keeps no observation and no process, and two pipelines sharing it sample independently."""
    mix = GaussianMixture(torch.tensor([[-2.0, -2.0], [2.0, 2.0]]), 0.3)
    g = dk.create("guidance", "inpaint")
    before = dict(vars(g))
    pipes = [_pipe(dk.create("process", name), mix, g, steps=20) for name in ("vp", "ve")]
    y, mask = torch.full((6, 2), 2.0), torch.tensor([1.0, 0.0]).expand(6, 2)
    for pipe in pipes:
        x = pipe.sample(6, cond={"image": y, "mask": mask}, generator=torch.Generator().manual_seed(0))
        assert torch.equal(x[:, 0], y[:, 0])
    assert vars(g).keys() == before.keys() and all(vars(g)[k] is v for k, v in before.items())
    assert g.image is None
    with pytest.raises(dk.ConfigError, match="observation"):  # nothing leaked from the calls above
        pipes[0].sample(2)
