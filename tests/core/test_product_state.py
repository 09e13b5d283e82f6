"""A Product process written only in this file (two independent VP components over the dict
state {"a": (B, 3), "b": (B, 2, 2)}) goes through the whole core unchanged: training,
sampling with euler-maruyama and pc, save / load, ONNX export with one input per leaf.

The data are Gaussian with independent coordinates, so the trained model is checked against
the data's means and standard deviations (a learned score of Gaussian data is easy)."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field

import diffusekit as dk
from diffusekit.network import Network

MEAN_A = torch.tensor([1.0, -1.0, 0.5])
MEAN_B = torch.tensor([[0.0, 2.0], [-2.0, 0.0]])
STD = 0.3


class ToyProductConfig(dk.ComponentConfig):
    beta_max_a: float = Field(20.0, gt=0)
    beta_max_b: float = Field(10.0, gt=0)


class ToyProduct(dk.ProductProcess):
    """Two independent VP components with their own schedules, one shared time."""

    Config = ToyProductConfig

    def __init__(self, **params):
        super().__init__(**params)
        self._parts = {"a": dk.create("process", {"name": "vp", "beta_max": self.config.beta_max_a}),
                       "b": dk.create("process", {"name": "vp", "beta_max": self.config.beta_max_b})}

    @property
    def components(self):
        return self._parts


class ToyNetConfig(dk.ComponentConfig):
    hidden: int = Field(64, ge=4)


class ToyNet(Network):
    """Joint dict-in / dict-out MLP: both keys see the whole state."""

    Config = ToyNetConfig
    sample_shape = {"a": (3,), "b": (2, 2)}

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3 + 4 + 2, hidden), torch.nn.SiLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
                                       torch.nn.Linear(hidden, 7))

    def forward(self, x, t, cond=None):
        emb = torch.stack([torch.sin(3 * t), torch.cos(3 * t)], 1).to(x["a"].dtype)
        out = self.net(torch.cat([x["a"], x["b"].flatten(1), emb], 1))
        return {"a": out[:, :3], "b": out[:, 3:].reshape(-1, 2, 2)}


@pytest.fixture
def registry(sde_registry):
    reg = sde_registry.registry
    reg.register("process", "toy-product", ToyProduct, config=ToyProductConfig)
    reg.register("network", "toy-product-net", ToyNet, config=ToyNetConfig)
    return sde_registry


def data(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"a": MEAN_A + STD * torch.randn(n, 3, generator=g),
            "b": MEAN_B + STD * torch.randn(n, 2, 2, generator=g)}


def make_pipe(sampler=None):
    return dk.Pipeline.from_config({
        "process": {"name": "toy-product"}, "parameterization": "eps",
        "network": {"name": "toy-product-net", "hidden": 64},
        "sampler": sampler or {"name": "euler-maruyama", "steps": 200}})


_TRAINED: list = []  # trained once per test session; each test registers the toy names again


@pytest.fixture
def trained(registry):
    if not _TRAINED:
        torch.manual_seed(0)
        pipe = make_pipe()
        before = torch.get_rng_state()
        result = dk.train(pipe, dk.Example(data(4000)), steps=800, batch_size=256, lr=3e-3, warmup=50, ema=0.99)
        assert torch.equal(torch.get_rng_state(), before), "dk.train changed the global torch RNG"
        assert result.final_loss < 0.5 * sum(result.losses[:20]) / 20
        _TRAINED.append(pipe)
    return _TRAINED[0]


def test_structure_and_capabilities(registry):
    pipe = make_pipe()
    assert pipe.sample_shape == {"a": (3,), "b": (2, 2)}
    caps = dk.process.capabilities_of(pipe.process)
    assert {"AdditiveGaussian", "SDE", "Product"} <= set(caps)
    # a sampler that does not handle per-key states is refused, naming the ones that do
    with pytest.raises(dk.CompatibilityError, match="euler-maruyama"):
        make_pipe({"name": "ode", "method": "euler", "steps": 10})


@pytest.mark.parametrize("sampler", [{"name": "euler-maruyama", "steps": 200},
                                     {"name": "pc", "steps": 100, "corrector": "ald", "snr": 0.1}])
def test_train_and_sample(trained, sampler):
    x = trained.sample(2000, generator=torch.Generator().manual_seed(1), sampler=sampler)
    assert set(x) == {"a", "b"} and x["a"].shape == (2000, 3) and x["b"].shape == (2000, 2, 2)
    assert trained.last_nfe == (200 if sampler["name"] == "euler-maruyama" else 200)
    assert torch.allclose(x["a"].mean(0), MEAN_A, atol=0.1), x["a"].mean(0)
    assert torch.allclose(x["b"].mean(0), MEAN_B, atol=0.1), x["b"].mean(0)
    for leaf in (x["a"], x["b"].flatten(1)):
        assert torch.allclose(leaf.std(0), torch.full((leaf.shape[1],), STD), atol=0.08), leaf.std(0)


def test_per_sample_generators_are_batch_invariant(registry):
    pipe = make_pipe({"name": "pc", "steps": 5})
    big = pipe.sample(4, generator=[0, 1, 2, 3])
    small = pipe.sample(2, generator=[0, 1])
    for k in ("a", "b"):
        assert torch.allclose(big[k][:2], small[k], atol=1e-6)


def test_save_load_bit_identical(trained, tmp_path):
    seeds = list(range(16))
    x = trained.sample(16, generator=seeds)
    trained.save(tmp_path / "run")
    loaded = dk.Pipeline.load(tmp_path / "run")
    assert loaded.sample_shape == {"a": (3,), "b": (2, 2)}
    y = loaded.sample(16, generator=seeds)
    assert all(torch.equal(x[k], y[k]) for k in ("a", "b"))


def test_trajectory_holds_dict_states(registry):
    pipe = make_pipe({"name": "euler-maruyama", "steps": 4})
    res = pipe.sample(3, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert len(res.trajectory) == 4 and set(res.trajectory[-1]) == {"a", "b"}
    assert res.nfe == 4


def test_onnx_export_one_input_per_leaf(trained, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    report = dk.export(trained, "onnx", path)
    model = onnx.load(str(path))
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    assert inputs == ["x_t.a", "x_t.b", "t"], inputs
    assert outputs == ["eps.a", "eps.b"], outputs
    assert report.max_abs_err < 1e-4
