"""Pipeline: component fit checks, sampling contract (NFE, trajectory, callback, progress,
batch-invariant seeds), NaN detection with the step index, bad input, save / load."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import diffusekit as dk
import diffusekit.builtins
import diffusekit_template
from diffusekit.errors import CompatibilityError, ConfigError, NonFiniteError, ShapeError
from diffusekit.parameterization import Parameterization
from diffusekit.process import Discrete, ForwardProcess, Perturbed
from diffusekit.sampler import Sampler
from diffusekit.testing import GaussianMixture, mmd
from diffusekit.testing.oracles import MixtureOracle, oracle_pipeline

SMALL_MLP = {"name": "mlp", "dim": 2, "hidden": 32, "depth": 1}


# ----------------------------------------------------------------------------- fit checks
class Tokens(ForwardProcess, Discrete):
    """A tiny absorbing-state process (only what the fit check needs)."""

    vocab_size, mask_id = 5, 4

    def alpha(self, t):
        return 1 - t

    def perturb(self, x0, t, cond=None, generator=None):
        return Perturbed(x_t=x0, t=t)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        return torch.full((n, *shape), self.mask_id, dtype=torch.long, device=device)


class Logits(Parameterization):
    """Logits for discrete processes."""

    requires = (Discrete,)
    output = "logits"

    def loss(self, denoiser, x0, cond=None, generator=None):
        return torch.zeros(())


class TokenSampler(Sampler):
    """Unmasks everything at once (only for the fit check)."""

    requires = (Discrete,)

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        return x


@pytest.fixture
def mixed_registry(isolated_registry):
    """Core built-ins + the template (an AdditiveGaussian sampler) + the discrete toys above."""
    isolated_registry.load_module(diffusekit.builtins)
    isolated_registry.load_module(diffusekit_template)
    reg = isolated_registry.registry
    reg.register("process", "tokens", Tokens)
    reg.register("parameterization", "logits", Logits)
    reg.register("sampler", "token-sampler", TokenSampler)
    return reg


def test_sampler_that_needs_affine_gaussian_refuses_discrete_process(mixed_registry):
    with pytest.raises(CompatibilityError) as info:
        dk.Pipeline(process="tokens", network=nn.Identity(), parameterization="logits",
                    sampler="template-ddim")
    msg = str(info.value)
    assert "needs a process with ['AdditiveGaussian']" in msg and "Tokens has ['Discrete']" in msg
    assert "samplers that fit: ['token-sampler']" in msg


def test_parameterization_fit_names_what_fits(mixed_registry):
    from diffusekit_sde.parameterizations import Eps

    mixed_registry.register("parameterization", "eps", Eps)
    with pytest.raises(CompatibilityError, match=r"parameterizations that fit: \['logits'\]"):
        dk.Pipeline(process="tokens", network=nn.Identity(), parameterization="eps", sampler="token-sampler")


def test_default_sampler_follows_capabilities(mixed_registry):
    pipe = dk.Pipeline(process="tokens", network=nn.Identity(), parameterization="logits")
    assert isinstance(pipe.sampler, TokenSampler)


def test_wrong_object_types_are_named():
    with pytest.raises(ConfigError, match="process: expected a ForwardProcess"):
        dk.Pipeline(process=object(), network=nn.Identity(), parameterization="eps")
    with pytest.raises(ConfigError, match="network"):
        dk.Pipeline(process="vp", network=None, parameterization="eps")


# ----------------------------------------------------------------------------- sampling
def _oracle(steps: int = 20):
    gm = GaussianMixture.ring(k=4, radius=1.0, std=0.15)
    return gm, oracle_pipeline(dk.create("process", "vp"), gm, sampler={"name": "template-ddim", "steps": steps})


def test_sample_reports_nfe_trajectory_callback_and_progress():
    _, pipe = _oracle(10)
    seen = []
    res = pipe.sample(16, generator=torch.Generator().manual_seed(0), progress=True, return_trajectory=True,
                      callback=lambda info: seen.append((info["i"], float(info["t"]))))
    assert isinstance(res, dk.SamplingResult)
    assert res.nfe == pipe.last_nfe == 10
    assert len(res.trajectory) == 10 and res.trajectory[-1].shape == (16, 2)
    assert torch.equal(res.trajectory[-1], res.sample)
    assert [i for i, _ in seen] == list(range(10))
    assert all(a > b for (_, a), (_, b) in zip(seen, seen[1:]))  # time decreases


def test_seeded_sampling_is_reproducible_and_batch_invariant():
    _, pipe = _oracle(10)
    a = pipe.sample(6, generator=torch.Generator().manual_seed(3))
    b = pipe.sample(6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    big = pipe.sample(6, generator=list(range(6)))  # integer seeds, one per sample
    small = pipe.sample(3, generator=[torch.Generator().manual_seed(s) for s in range(3)])
    assert torch.allclose(big[:3], small, atol=1e-6)


def test_oracle_sampling_matches_the_data():
    gm, pipe = _oracle(50)
    ref = gm.sample(800, torch.Generator().manual_seed(1))
    # mean over 3 seeds: one draw of MMD at n = 800 fluctuates by about +-0.005
    got = sum(mmd(pipe.sample(800, generator=torch.Generator().manual_seed(s)), ref) for s in (10, 11, 12)) / 3
    floor = sum(mmd(gm.sample(800, torch.Generator().manual_seed(s)), ref) for s in (20, 21, 22)) / 3
    far = mmd(gm.sample(800, torch.Generator().manual_seed(2)) * 1.3, ref)
    assert got < floor + 0.006 < far, (got, floor, far)


class NaNAfter(dk.Network):
    """The exact oracle, but NaN from the ``bad_call``-th network call on (0-based)."""

    def __init__(self, inner: nn.Module, bad_call: int):
        super().__init__()
        self.inner, self.bad_call, self.calls = inner, bad_call, 0
        self.sample_shape = inner.sample_shape

    def forward(self, x, t, cond=None):
        out = self.inner(x, t, cond)
        self.calls += 1
        return out * float("nan") if self.calls > self.bad_call else out


def test_nan_is_reported_with_its_step_index():
    gm = GaussianMixture.ring()
    proc = dk.create("process", "vp")
    net = NaNAfter(MixtureOracle(gm, proc), bad_call=7)
    pipe = dk.Pipeline(process=proc, network=net, parameterization="x0",
                       sampler={"name": "template-ddim", "steps": 20})
    with pytest.raises(NonFiniteError) as info:
        pipe.sample(8, generator=torch.Generator().manual_seed(0))
    assert info.value.step == 7
    assert "NaN/Inf at step 7" in str(info.value)


class NoCheckSampler(Sampler):
    """A sampler that neither checks finiteness itself nor is a StepSampler."""

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        for i in range(5):
            t = torch.full((x.shape[0],), 1.0 - 0.19 * (i + 1))
            x = denoiser(x, t, cond).x0
            if callback is not None:
                callback({"i": i, "t": t[0], "x": x, "prediction": None})
        return x


def test_pipeline_backstop_catches_nan_in_any_sampler():
    gm = GaussianMixture.ring()
    proc = dk.create("process", "vp")
    pipe = dk.Pipeline(process=proc, network=NaNAfter(MixtureOracle(gm, proc), bad_call=2),
                       parameterization="x0", sampler=NoCheckSampler())
    with pytest.raises(NonFiniteError) as info:
        pipe.sample(4)
    assert info.value.step == 2


# ----------------------------------------------------------------------------- bad input
def test_bad_sample_arguments():
    _, pipe = _oracle(5)
    for n in (0, -3, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="n: n must be a positive integer"):
            pipe.sample(n)
    with pytest.raises(ConfigError, match="generator: got 3 per-sample generators for a batch of 4"):
        pipe.sample(4, generator=[0, 1, 2])
    with pytest.raises(ShapeError, match=r"cond: condition has shape \(3,\) but the batch has 4"):
        pipe.sample(4, cond=torch.zeros(3))
    with pytest.raises(ShapeError, match="x_init: batch 2 != n = 4"):
        pipe.sample(4, x_init=torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="unknown sampler 'nope'"):
        pipe.sample(4, sampler="nope")


def test_bad_loss_inputs():
    pipe = dk.Pipeline.from_config({"process": "vp", "parameterization": "eps", "network": SMALL_MLP})
    pipe.sample_shape = (2,)
    with pytest.raises(ShapeError, match=r"x0: per-sample shape \(3,\) does not match .* sample_shape \(2,\)"):
        pipe.loss(torch.zeros(8, 3))
    with pytest.raises(ShapeError, match="expected a Tensor"):
        pipe.loss([[0.0, 1.0]])
    with pytest.raises(ShapeError, match="non-empty batch"):
        pipe.loss(torch.zeros(0, 2))
    with pytest.raises(ShapeError, match=r"cond: condition has shape \(5, 1\) but the batch has 8"):
        pipe.loss(torch.zeros(8, 2), cond=torch.zeros(5, 1))
    loss = pipe.loss(torch.randn(8, 2), generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()


def test_log_likelihood_unsupported_is_named(mixed_registry):
    pipe = dk.Pipeline(process="tokens", network=nn.Identity(), parameterization="logits")
    with pytest.raises(CompatibilityError, match="Tokens provides no log_likelihood"):
        pipe.log_likelihood(torch.zeros(2, 3, dtype=torch.long))


# ----------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("sampler", [{"name": "template-ddim", "steps": 8},
                                     {"name": "euler-maruyama", "steps": 8}])
def test_save_load_gives_bit_identical_samples(tmp_path, sampler):
    torch.manual_seed(0)
    pipe = dk.Pipeline.from_config({"process": {"name": "vp", "beta_max": 15.0}, "parameterization": "eps",
                                    "network": SMALL_MLP, "sampler": sampler, "sample_shape": [2]})
    pipe.save(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["pipeline"]["process"] == {"name": "vp", "beta_min": 0.1, "beta_max": 15.0,
                                          "train_eps": 1e-5, "sampling_eps": 1e-3}
    assert doc["provenance"]["sampler"]["plugin"] in ("template", "sde")
    loaded = dk.Pipeline.load(tmp_path / "run")
    for k, v in pipe.network.state_dict().items():
        assert torch.equal(v, loaded.network.state_dict()[k])
    a = pipe.sample(64, generator=torch.Generator().manual_seed(5))
    b = loaded.sample(64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_save_needs_a_registered_network(tmp_path):
    _, pipe = _oracle(5)
    with pytest.raises(ConfigError, match="network: the network was not created from the registry"):
        pipe.save(tmp_path / "run")


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="config.json not found"):
        dk.Pipeline.load(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a diffusekit pipeline config"):
        dk.Pipeline.load(tmp_path / "bad")
