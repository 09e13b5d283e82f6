"""Training: exact resume, warm-up / EMA / checkpoint files, clear errors for bad input and
non-finite losses."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit.errors import ConfigError, NonFiniteError, ShapeError

CFG = {"process": "vp", "parameterization": "eps", "network": {"name": "mlp", "dim": 2, "hidden": 32, "depth": 1}}
KW = dict(steps=12, batch_size=32, lr=1e-3, warmup=3, ema=0.9, checkpoint_every=4)


def _pipe(seed: int):
    torch.manual_seed(seed)
    return dk.Pipeline.from_config(CFG)


@pytest.fixture(scope="module")
def data():
    return dk.create("dataset", {"name": "moons", "n": 512})


def test_resume_equals_uninterrupted(tmp_path, data):
    full = _pipe(0)
    res_full = dk.train(full, data, out_dir=tmp_path / "full", **KW)
    part = _pipe(0)
    res_part = dk.train(part, data, out_dir=tmp_path / "part", stop_after=6, **KW)
    assert res_part.steps == 6 and (tmp_path / "part" / "checkpoint" / "step-00000006" / "state.json").exists()
    resumed = _pipe(123)  # different initial weights: everything must come from the checkpoint
    res = dk.train(resumed, data, out_dir=tmp_path / "part", resume=True, **KW)
    assert res.resumed_from == 6
    assert res.losses == res_full.losses  # same batches, noise and optimizer state
    for k, v in full.network.state_dict().items():
        assert torch.equal(v, resumed.network.state_dict()[k]), k  # exact, EMA weights included


def test_checkpoint_contents_and_saved_pipeline(tmp_path, data):
    pipe = _pipe(0)
    dk.train(pipe, data, out_dir=tmp_path, **KW)
    from diffusekit.train import latest_checkpoint

    ckpt = latest_checkpoint(tmp_path)
    meta = json.loads((ckpt / "state.json").read_text())
    assert meta["step"] == 12 and len(meta["losses"]) == 12 and meta["pipeline"]["process"]["name"] == "vp"
    from safetensors.torch import load_file

    rng = load_file(str(ckpt / "rng_rank0.safetensors"))
    assert {"rng.data", "rng.noise", "rng.torch"} <= set(rng)
    loaded = dk.Pipeline.load(tmp_path)  # the final (EMA) pipeline
    for k, v in pipe.network.state_dict().items():
        assert torch.equal(v, loaded.network.state_dict()[k])


def test_warmup_and_ema(data):
    pipe = _pipe(0)
    seen = []
    opt_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return opt_step(self, *a, **k)

    torch.optim.AdamW.step = spy
    try:
        dk.train(pipe, data, steps=5, batch_size=16, lr=1e-2, warmup=4, ema=None)
    finally:
        torch.optim.AdamW.step = opt_step
    assert seen == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])
    from diffusekit.train import EMA

    net = nn.Linear(1, 1, bias=False)
    nn.init.constant_(net.weight, 1.0)
    ema = EMA(net, 0.9)
    nn.init.constant_(net.weight, 3.0)
    ema.update(net)
    assert float(ema.shadow["weight"]) == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)


class Exploding(dk.Network):
    sample_shape = (2,)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return x * self.w * (float("inf") if self.calls > 3 else 1.0)


def test_non_finite_loss_names_the_step(data):
    pipe = dk.Pipeline(process="vp", network=Exploding(), parameterization="eps")
    with pytest.raises(NonFiniteError, match="training loss became (nan|inf) at step 3") as info:
        dk.train(pipe, data, steps=10, batch_size=8, ema=None)
    assert info.value.step == 3


def test_bad_training_arguments(tmp_path, data):
    pipe = _pipe(0)
    with pytest.raises(ConfigError, match="train.steps: steps must be an integer >= 1, got 0"):
        dk.train(pipe, data, steps=0)
    with pytest.raises(ConfigError, match="train.batch_size"):
        dk.train(pipe, data, steps=1, batch_size=0)
    with pytest.raises(ConfigError, match="train.out_dir: checkpointing / resume needs out_dir"):
        dk.train(pipe, data, steps=1, checkpoint_every=1)
    with pytest.raises(ConfigError, match="data: data must be an Example"):
        dk.train(pipe, 3.0, steps=1)
    with pytest.raises(ShapeError, match="data: per-sample shape"):
        pipe.sample_shape = (2,)
        dk.train(pipe, torch.zeros(16, 5), steps=1)
    with pytest.raises(ConfigError, match="unknown dataset 'moonz'; did you mean 'moons'"):
        dk.train(pipe, "moonz", steps=1)
    # values that used to be accepted silently (gradient ascent, an EMA that diverges, ...)
    for kwargs, loc in [({"warmup": -5}, "train.warmup"), ({"ema": 1.5}, "train.ema"), ({"ema": 1.0}, "train.ema"),
                        ({"checkpoint_every": -2}, "train.checkpoint_every"), ({"lr": -1e-3}, "train.lr"),
                        ({"lr": float("nan")}, "train.lr"), ({"steps": True}, "train.steps"),
                        ({"batch_size": 8.0}, "train.batch_size"), ({"grad_clip": 0}, "train.grad_clip"),
                        ({"keep_checkpoints": 0}, "train.keep_checkpoints")]:
        with pytest.raises(ConfigError, match=f"^{loc}: "):
            dk.train(pipe, data, **{"steps": 1, **kwargs})


def test_one_module_conditioner_gets_ema_and_global_rng_is_untouched():
    """The conditioner's learned embedding lives in pipe.model with the network: EMA applies to
    both, and dk.train leaves the caller's global RNG as it was."""
    pipe = dk.Pipeline(process="vp", parameterization="eps",
                       network={"name": "mlp", "dim": 2, "hidden": 16, "depth": 1, "cond_dim": 4},
                       conditioner={"name": "label", "num_classes": 3, "embed_dim": 4, "dropout": 0.0})
    assert set(pipe.model.state_dict()) >= {"conditioner.embedding.weight"}
    g = torch.Generator().manual_seed(0)
    data = dk.Example(torch.randn(256, 2, generator=g), torch.randint(0, 3, (256,), generator=g))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    # an EMA of decay ~1 keeps (almost) the initial weights of *every* part of the module
    init = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    dk.train(pipe, data, steps=20, batch_size=32, lr=1e-2, ema=0.999999)
    assert torch.equal(torch.get_rng_state(), before)
    for key in ("conditioner.embedding.weight", "network.out.weight"):
        if key in init:
            # warm-up decay min(d, (1+k)/(10+k)) still averages: close to the start, not equal to the raw weights
            assert (pipe.model.state_dict()[key] - init[key]).abs().max() < 0.2, key
    raw = dk.Pipeline(process="vp", parameterization="eps",
                      network={"name": "mlp", "dim": 2, "hidden": 16, "depth": 1, "cond_dim": 4},
                      conditioner={"name": "label", "num_classes": 3, "embed_dim": 4, "dropout": 0.0})
    raw.model.load_state_dict(init)
    dk.train(raw, data, steps=20, batch_size=32, lr=1e-2, ema=None)
    moved_raw = (raw.model.state_dict()["conditioner.embedding.weight"] - init["conditioner.embedding.weight"]).abs().max()
    moved_ema = (pipe.model.state_dict()["conditioner.embedding.weight"] - init["conditioner.embedding.weight"]).abs().max()
    assert moved_ema < moved_raw  # the conditioner ended with its EMA weights, not the raw ones


def test_lr_decay_cosine_ramps_then_falls_to_zero_and_bad_names_are_refused():
    from diffusekit.train import lr_at

    assert [lr_at(s, 100, 1.0, warmup=10) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_at(50, 100, 1.0, warmup=10) == 1.0  # "none": constant after the warm-up
    cos = [lr_at(s, 110, 1.0, warmup=10, decay="cosine") for s in (10, 60, 109, 110)]
    assert cos[0] == 1.0 and cos[1] == pytest.approx(0.5) and 0 < cos[2] < 1e-3 and cos[3] == 0.0
    pipe = dk.Pipeline.from_config({"process": "vp", "parameterization": "eps", "network": {"name": "mlp", "dim": 2}})
    with pytest.raises(dk.ConfigError, match="lr_decay.*cosine"):
        dk.train(pipe, torch.randn(64, 2), steps=2, lr_decay="linear", progress=False)


def test_grouped_batches_come_from_one_group_and_keep_every_example_equally_often():
    from diffusekit.train import batch_indices, group_pools

    groups = torch.tensor([0] * 2 + [1] * 6 + [2] * 12)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(20)
    for _ in range(3000):
        idx = batch_indices(20, group_pools(groups), 4, gen)
        assert len(set(groups[idx].tolist())) == 1
        counts += torch.bincount(idx, minlength=20)
    share = counts / counts.sum()
    assert float((share - 0.05).abs().max()) < 0.01  # uniform marginal (12000 draws; sd ~0.002)
    plain = batch_indices(20, None, 64, torch.Generator().manual_seed(0))
    assert len(set(groups[plain].tolist())) == 3


def test_trainer_compacts_grouped_batches_and_checks_groups():
    seen = []

    class Recording(type(dk.create("process", "vp"))):
        """A VP process whose compact records the batches the trainer hands it."""

        def compact(self, x0, cond=None):
            seen.append(tuple(x0.shape))
            return x0, cond

    pipe = dk.Pipeline(process=Recording(), parameterization="eps", network={"name": "mlp", "dim": 2})
    x = torch.randn(64, 2)
    groups = (x[:, 0] > 0).long()
    dk.train(pipe, dk.Example(x, None, groups), steps=3, batch_size=8, progress=False, data_stats=False)
    assert seen == [(8, 2)] * 3
    dk.train(pipe, x, steps=2, batch_size=8, progress=False, data_stats=False)
    assert len(seen) == 3  # ungrouped data: batches as drawn (no compact call)
    with pytest.raises(ConfigError, match=r"data.groups must be None or an integer tensor of shape \(64,\)"):
        dk.train(pipe, dk.Example(x, None, groups.float()), steps=1, batch_size=8, progress=False)
    with pytest.raises(ConfigError, match="data.groups"):
        dk.train(pipe, dk.Example(x, None, groups[:10]), steps=1, batch_size=8, progress=False)
