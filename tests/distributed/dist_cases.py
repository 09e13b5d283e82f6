"""Pipelines and data shared by the tests and the torchrun script (``dist_script.py``): every
case is built the same way in every process, from seeds, with exact oracles or seeded tiny
networks, so their samples can be compared byte for byte across world sizes."""

from __future__ import annotations

import torch
from pydantic import Field

import diffusekit as dk
from diffusekit.fit import Fit, fitting
from diffusekit.network import Network
from diffusekit.testing import GaussianMixture, MixtureOracle

#: 4 shards of 2, 2, 2, 1 samples: over 3 ranks 2 + 1 + 1 shards, a short last shard
N, BATCH, SEED = 7, 2, 11
STEPS = 4


def gaussian_pipe(sampler, guidance=None) -> dk.Pipeline:
    proc = dk.create("process", "vp")
    gm = GaussianMixture.random(3, 2, seed=0)
    return dk.Pipeline(process=proc, network=MixtureOracle(gm, proc), parameterization="x0", sampler=sampler,
                       guidance=guidance, sample_shape=(2,))


def masked_pipe(sampler) -> dk.Pipeline:
    from diffusekit_masked.oracle import JointOracle

    g = torch.Generator().manual_seed(3)
    p = torch.rand(27, generator=g, dtype=torch.float64) + 0.2
    return dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=JointOracle((p / p.sum()).view(3, 3, 3)),
                       sampler=sampler)


class ToyProduct(dk.ProductProcess):
    """Two VP components over the dict state {"a": (B, 3), "b": (B, 2, 2)}."""

    def __init__(self, **params):
        super().__init__(**params)
        self._parts = {"a": dk.create("process", "vp"), "b": dk.create("process", {"name": "vp", "beta_max": 10.0})}

    @property
    def components(self):
        return self._parts


class ToyNetConfig(dk.ComponentConfig):
    hidden: int = Field(8, ge=1)


class ToyNet(Network):
    """A seeded (untrained) dict-in / dict-out MLP."""

    sample_shape = {"a": (3,), "b": (2, 2)}

    def __init__(self, hidden: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.w1 = torch.nn.Parameter(torch.randn(3 + 4 + 1, hidden, generator=g) * 0.3)
        self.w2 = torch.nn.Parameter(torch.randn(hidden, 7, generator=g) * 0.3)

    def forward(self, x, t, cond=None):
        h = torch.cat([x["a"], x["b"].flatten(1), t[:, None].to(x["a"].dtype)], 1)
        out = torch.tanh(h @ self.w1) @ self.w2
        return {"a": out[:, :3], "b": out[:, 3:].reshape(-1, 2, 2)}


def product_pipe(sampler) -> dk.Pipeline:
    return dk.Pipeline(process=ToyProduct(), network=ToyNet(), parameterization="eps", sampler=sampler)


def _small(name: str) -> dict:
    spec = {"name": name}
    fields = type(dk.create("sampler", name).config).model_fields
    if "steps" in fields:
        spec["steps"] = STEPS
    if name == "ode":
        spec.update(rtol=1e-3, atol=1e-3)  # adaptive: shares one step size over the batch
    return spec


def svdd_guidance():
    from diffusekit_guidance.svdd import SVDD

    return SVDD(reward=lambda x0: -(x0 ** 2).sum(1), particles=2, temperature=1.0, seed=4)


def cases() -> dict:
    """case id -> (pipeline factory, sampler spec, n, batch size)."""
    out = {}
    vp = dk.create("process", "vp")
    for name in fitting("sampler", Fit(vp, dk.create("parameterization", "x0"), None, (), None)):
        out[f"gauss-{name}"] = (gaussian_pipe, _small(name), N, BATCH)
    out["gauss-ddim-eta1"] = (gaussian_pipe, {"name": "ddim", "steps": STEPS, "eta": 1.0}, N, BATCH)
    out["gauss-pc-langevin-batchnorm"] = (gaussian_pipe, {"name": "pc", "steps": STEPS, "corrector": "langevin"},
                                          N, BATCH)
    masked = dk.create("process", {"name": "masked", "vocab_size": 3})
    for name in fitting("sampler", Fit(masked, dk.create("parameterization", "logits"), None, (), None)):
        out[f"masked-{name}"] = (masked_pipe, _small(name), N, BATCH)
    out["product-euler-maruyama"] = (product_pipe, {"name": "euler-maruyama", "steps": STEPS}, N, BATCH)
    # SVDD: the particles of a batch interact; shards are whole batches, so world sizes still agree
    out["gauss-svdd"] = (lambda s: gaussian_pipe(s, guidance=svdd_guidance()),
                         {"name": "euler-maruyama", "steps": STEPS}, 8, 4)
    return out


def metric_data() -> dict:
    """Sets for MMD (uneven sizes) and paired signals for per-item metrics."""
    g = torch.Generator().manual_seed(21)
    return {"x": torch.randn(23, 3, generator=g), "y": torch.randn(17, 3, generator=g) + 0.3,
            "est": torch.randn(11, 400, generator=g), "ref": torch.randn(11, 400, generator=g)}


def abs_error(estimate, reference) -> float:
    return float((estimate - reference).abs().mean())


def torchrun(nproc: int, *args: str, timeout: float = 300):
    """``python -m torch.distributed.run --standalone --nproc_per_node nproc ARGS`` (gloo on CPU)."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out
