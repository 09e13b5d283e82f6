"""SE(3) process, pose parameterization, reverse sampler and Kabsch head (docs/plugins/se3.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import diffusekit as dk
from diffusekit.testing import check_object
from diffusekit_se3 import lie
from diffusekit_se3.kabsch import kabsch, kabsch_svd
from diffusekit_se3.metrics import icp, rotation_error_deg, summary, translation_error


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _poses(n, max_angle=math.pi, seed=0):
    g = _g(seed)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return lie.from_rt(lie.so3_exp(axis * angle), torch.randn(n, 3, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("name", ["se3", "igso3"])
def test_processes_pass_the_conformance_kit(name):
    results = check_object("process", dk.create("process", name), name)
    assert all(r.status == "pass" for r in results), [r.line() for r in results]


def test_schedule_and_posterior_coefficients():
    proc = dk.create("process", "se3")
    ab = proc.alpha_bar(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert float(ab[0]) == pytest.approx(1.0) and float(ab[2]) == 0.0 and 0 < float(ab[1]) < 1
    sampler = dk.create("sampler", "se3-ancestral", steps=7)
    plan = sampler.build_plan(proc)
    ab = proc.alpha_bar(plan.t)
    lhs = plan.coef["g0"] + plan.coef["g1"] * torch.sqrt(ab[:-1])
    assert torch.allclose(lhs, torch.sqrt(ab[1:]), atol=1e-12)        # g0 + g1 sqrt(abar_t) = sqrt(abar_s)
    assert float(plan.coef["g0"][-1]) == pytest.approx(1.0) and float(plan.coef["g1"][-1]) == 0.0


def test_noise_free_reverse_step_stays_on_the_forward_geodesic():
    proc = dk.create("process", "se3")
    sampler = dk.create("sampler", "se3-ancestral", steps=5, stochastic=False)
    plan = sampler.build_plan(proc)
    h0 = _poses(16, 2.5, seed=1)
    for i in range(plan.num_steps):
        t, s = plan.t[i].expand(16), plan.t[i + 1].expand(16)
        h_t = proc.geodesic_mean(h0, t)
        xi = plan.coef["g0"][i] * lie.se3_log(h0) + plan.coef["g1"][i] * lie.se3_log(h_t)
        assert torch.allclose(lie.se3_exp(xi), proc.geodesic_mean(h0, s), atol=1e-10)


def test_forward_noise_statistics():
    """log(H_t M_t^-1) / (sqrt(1 - abar_t) s) is standard normal (left-multiplied noise)."""
    proc = dk.create("process", "se3")
    n = 20000
    h0 = _poses(1, 1.0, seed=2).expand(n, 4, 4).float()
    t = torch.full((n,), 0.6)
    pert = proc.perturb(h0, t, generator=_g(3))
    mean = proc.geodesic_mean(h0.double(), t)
    xi = lie.se3_log(pert.x_t.double() @ lie.se3_inverse(mean))
    z = xi / (torch.sqrt(1 - proc.alpha_bar(t.double()))[:, None] * proc.scales())
    assert z.mean(0).abs().max() < 0.05
    assert torch.allclose(z.std(0), torch.ones(6, dtype=torch.float64), atol=0.03)


def test_kabsch_oracle_recovers_the_pose_from_any_start():
    proc = dk.create("process", "se3")
    h0, cond = proc.conformance_example(32, _g(4))
    for sampler in ({"name": "se3-ancestral", "steps": 5}, {"name": "se3-ancestral", "steps": 3, "stochastic": False}):
        pipe = dk.Pipeline(process=proc, network="kabsch", parameterization="pose", sampler=sampler)
        start = _poses(32, math.pi, seed=5).float()                  # far from the truth
        out = pipe.sample(32, cond=cond, x_init=start, generator=list(range(32)))
        assert pipe.last_nfe == sampler["steps"]
        assert float(rotation_error_deg(out, h0).max()) < 1e-4
        assert float(translation_error(out, h0).max()) < 1e-5


def test_gaussian_samplers_and_parameterizations_are_refused():
    with pytest.raises(dk.CompatibilityError, match="se3-ancestral"):
        dk.Pipeline(process="se3", network="kabsch", parameterization="pose", sampler="ddim")
    with pytest.raises(dk.CompatibilityError, match="pose"):
        dk.Pipeline(process="se3", network="kabsch", parameterization="eps")


def test_horn_kabsch_matches_svd_and_is_a_proper_rotation():
    g = _g(6)
    h = _poses(64, math.pi, seed=7)
    x = torch.randn(64, 40, 3, generator=g, dtype=torch.float64)
    y = lie.transform(h, x) + 0.05 * torch.randn(64, 40, 3, generator=g, dtype=torch.float64)
    w = torch.rand(64, 40, generator=g, dtype=torch.float64)
    a, b = kabsch(x, y, w), kabsch_svd(x, y, w)
    assert torch.allclose(a, b, atol=1e-10)
    assert torch.allclose(torch.linalg.det(a[:, :3, :3]), torch.ones(64, dtype=torch.float64))
    # a reflection-inducing configuration (planar points) still gives det = +1
    flat = x.clone()
    flat[..., 2] = 0
    r = kabsch(flat, flat * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))[:, :3, :3]
    assert torch.allclose(torch.linalg.det(r), torch.ones(64, dtype=torch.float64))


def test_icp_converges_on_clean_overlapping_clouds():
    g = _g(8)
    h = _poses(8, math.radians(20), seed=9)
    h[:, :3, 3] *= 0.1
    x = torch.randn(8, 300, 3, generator=g, dtype=torch.float64)
    y = lie.transform(h, x)
    est = icp(x, y)
    assert float(rotation_error_deg(est, h).max()) < 1e-3


def test_registration_pairs_dataset():
    ex = dk.create("dataset", {"name": "registration-pairs", "n": 6, "split": "val", "outliers": 0.1})
    assert ex.x.shape == (6, 4, 4) and ex.cond["source"].shape == (6, 128, 3) and ex.cond["model"].shape == (6, 128, 3)
    again = dk.create("dataset", {"name": "registration-pairs", "n": 6, "split": "val", "outliers": 0.1})
    assert torch.equal(ex.x, again.x)
    test = dk.create("dataset", {"name": "registration-pairs", "n": 6, "split": "test"})
    assert not torch.equal(ex.x, test.x)
    assert float(rotation_error_deg(ex.x, torch.eye(4).expand(6, 4, 4)).max()) <= 60.0 + 1e-3


@pytest.mark.slow
def test_registration_network_trains_a_few_steps_and_exports(tmp_path):
    pytest.importorskip("onnxruntime")
    pipe = dk.Pipeline(process="se3", parameterization="pose",
                       network={"name": "registration", "width": 32, "layers": 1},
                       sampler={"name": "se3-ancestral", "steps": 2})
    data = dk.create("dataset", {"name": "registration-pairs", "n": 64, "n_source": 48, "n_model": 48})
    res = dk.train(pipe, data, steps=30, batch_size=16, lr=1e-3, ema=None)
    assert all(math.isfinite(v) for v in res.losses)
    out = pipe.sample(4, cond={k: v[:4] for k, v in data.cond.items()}, generator=[0, 1, 2, 3])
    assert out.shape == (4, 4, 4) and torch.isfinite(out).all()
    report = dk.export(pipe, "onnx", tmp_path / "reg.onnx")
    assert report.max_abs_err < 1e-3
    assert report.inputs[:2] == ["x_t", "t"] and any("source" in n for n in report.inputs)


def test_summary_metrics():
    h = _poses(5, 1.0, seed=10)
    pts = torch.randn(5, 20, 3, dtype=torch.float64)
    s = summary(h, h, pts)
    assert s["median_rot_deg"] < 1e-5 and s["add"] < 1e-12 and s["recall"] == 1.0


def test_register_command(tmp_path, capsys):
    from diffusekit.cli import main

    proc = dk.create("process", "se3")
    h0, cond = proc.conformance_example(1, _g(11))
    pipe = dk.Pipeline(process="se3", network="kabsch", parameterization="pose",
                       sampler={"name": "se3-ancestral", "steps": 3})
    pipe.save(tmp_path / "run")
    np.save(tmp_path / "src.npy", cond["source"][0].double().numpy())
    with open(tmp_path / "model.ply", "w") as f:
        pts = cond["model"][0].double().numpy()
        f.write(f"ply\nformat ascii 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\n"
                "property float z\nend_header\n")
        f.writelines(f"{a} {b} {c}\n" for a, b, c in pts)
    rc = main(["register", str(tmp_path / "src.npy"), str(tmp_path / "model.ply"), "--run", str(tmp_path / "run"),
               "--out", str(tmp_path / "pose.txt"), "--plot", str(tmp_path / "overlay.png")])
    assert rc == 0
    pose = np.loadtxt(tmp_path / "pose.txt")
    assert np.allclose(pose, h0[0].double().numpy(), atol=1e-4)
    assert (tmp_path / "overlay.png").stat().st_size > 1000
    assert main(["register", str(tmp_path / "missing.ply"), str(tmp_path / "model.ply"),
                 "--run", str(tmp_path / "run")]) == 2
    assert "no such file" in capsys.readouterr().err
