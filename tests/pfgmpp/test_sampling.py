"""Heun (EDM, Karras grid, 18 steps = 35 NFE) from the exact PFGM++ prior with the exact
discrete-data denoiser lands on the data points with the right frequencies."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit_pfgmpp.oracle import oracle_pipeline

POINTS = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5], [0.5, -1.0]])
WEIGHTS = torch.tensor([0.1, 0.2, 0.3, 0.4])


def _heun(**kw):
    if "heun" not in dk.components("sampler"):
        pytest.skip("the EDM 'heun' sampler (solvers plugin) is not registered")
    return dk.create("sampler", "heun", steps=18, **kw)


def _process(D):
    return dk.create("process", "edm") if math.isinf(D) else dk.create("process", "pfgmpp", D=D)


@pytest.mark.parametrize("D", [4.0, 128.0, 2048.0, math.inf])
def test_heun_lands_on_points_with_right_frequencies(D):
    pipe = oracle_pipeline(_process(D), POINTS, WEIGHTS, sampler=_heun())
    n = 4000
    x = pipe.sample(n, generator=torch.Generator().manual_seed(0))
    assert pipe.last_nfe == 35
    assert bool(torch.isfinite(x).all())
    dist, idx = torch.cdist(x.double(), POINTS.double()).min(1)
    assert float(dist.max()) < 1e-2  # every sample is (numerically) one of the points
    freq = torch.bincount(idx, minlength=4).double() / n
    se = torch.sqrt(WEIGHTS.double() * (1 - WEIGHTS.double()) / n)
    assert bool(((freq - WEIGHTS.double()).abs() < 4 * se).all()), freq


def test_euler_on_the_karras_grid_also_converges():
    if "euler" not in dk.components("sampler"):
        pytest.skip("the EDM 'euler' sampler (solvers plugin) is not registered")
    pipe = oracle_pipeline(_process(16.0), POINTS, WEIGHTS, sampler=dk.create("sampler", "euler", steps=60))
    x = pipe.sample(4000, generator=torch.Generator().manual_seed(1))
    assert pipe.last_nfe == 60
    dist, idx = torch.cdist(x.double(), POINTS.double()).min(1)
    assert float(dist.max()) < 1e-2
    freq = torch.bincount(idx, minlength=4).double() / 4000
    se = torch.sqrt(WEIGHTS.double() * (1 - WEIGHTS.double()) / 4000)
    assert bool(((freq - WEIGHTS.double()).abs() < 4 * se).all()), freq


def test_per_sample_generators_make_samples_batch_invariant():
    pipe = oracle_pipeline(_process(16.0), POINTS, WEIGHTS, sampler=_heun())
    gens = lambda idx: [torch.Generator().manual_seed(10 + i) for i in idx]  # noqa: E731
    full = pipe.sample(6, generator=gens(range(6)))
    one = pipe.sample(1, generator=gens([4]))
    assert torch.allclose(full[4:5], one, atol=1e-6)


def test_pfgmpp_default_pipeline_uses_edm_and_heun():
    if "heun" not in dk.components("sampler"):
        pytest.skip("the EDM 'heun' sampler (solvers plugin) is not registered")
    net = dk.create("network", "mlp", dim=2, hidden=32, depth=1, time_scale=1.0)
    pipe = dk.Pipeline(process={"name": "pfgmpp", "D": 64}, network=net)
    assert type(pipe.parameterization).__name__ == "EDMPrecond"
    assert pipe.config["sampler"]["name"] == "heun"
    x = pipe.sample(8, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 2) and bool(torch.isfinite(x).all())


def test_save_load_round_trip(tmp_path):
    if "heun" not in dk.components("sampler"):
        pytest.skip("the EDM 'heun' sampler (solvers plugin) is not registered")
    torch.manual_seed(0)
    pipe = dk.Pipeline.from_config({
        "process": {"name": "pfgmpp", "D": 32.0, "sigma_max": 40.0},
        "parameterization": {"name": "edm", "sigma_data": 0.6},
        "network": {"name": "mlp", "dim": 3, "hidden": 32, "depth": 1, "time_scale": 1.0},
        "sampler": {"name": "heun", "steps": 5},
    })
    pipe.save(tmp_path / "run")
    loaded = dk.Pipeline.load(tmp_path / "run")
    assert loaded.process.D == 32.0 and loaded.process.sigma_max == 40.0
    assert loaded.parameterization.config.sigma_data == 0.6
    a = pipe.sample(4, generator=[1, 2, 3, 4])
    b = loaded.sample(4, generator=[1, 2, 3, 4])
    assert torch.equal(a, b) and loaded.last_nfe == 9


def test_edm_process_works_with_the_core_gaussian_mixture_oracle():
    """edm is AdditiveGaussian (1, 0, sigma): the core's exact GMM denoiser (x0 parameterization,
    raw sigma as time) plus Heun reproduces the mixture."""
    from diffusekit.testing import GaussianMixture, mmd
    from diffusekit.testing.oracles import oracle_pipeline as gm_pipeline

    gm = GaussianMixture.ring()
    pipe = gm_pipeline(dk.create("process", "edm"), gm, sampler=_heun())
    x = pipe.sample(1000, generator=torch.Generator().manual_seed(0))
    assert pipe.last_nfe == 35
    assert mmd(x, gm.sample(1000, torch.Generator().manual_seed(1))) < 0.01


def test_onnx_export_of_a_pfgmpp_pipeline(tmp_path):
    pytest.importorskip("onnxruntime")
    if "onnx" not in dk.components("exporter") or "heun" not in dk.components("sampler"):
        pytest.skip("needs the onnx exporter and the heun sampler")
    torch.manual_seed(0)
    net = dk.create("network", "mlp", dim=4, hidden=32, depth=1, time_scale=10.0)
    pipe = dk.Pipeline(process={"name": "pfgmpp", "D": 16}, network=net, sampler={"name": "heun", "steps": 6})
    report = dk.export(pipe, "onnx", tmp_path / "model.onnx")
    assert report.max_abs_err < 1e-4
