"""Closed-form checks of the SO(3) / SE(3) maths and IGSO(3) (docs/plugins/se3.md)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusekit_se3 import lie


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _twists(n, angle, seed=0):
    g = _g(seed)
    axis = torch.randn(n, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return torch.cat([axis * angle, torch.randn(n, 3, generator=g, dtype=torch.float64)], -1)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, 5e-3, 0.3, 1.7, 3.0, math.pi - 1e-3, math.pi - 1e-6])
def test_exp_log_round_trip(angle):
    xi = _twists(64, angle)
    h = lie.se3_exp(xi)
    back = lie.se3_log(h)
    assert torch.allclose(back, xi, atol=1e-9, rtol=0), (back - xi).abs().max()
    r = lie.so3_exp(xi[:, :3])
    assert torch.allclose(lie.so3_log(r), xi[:, :3], atol=1e-9)
    # on the group: R^T R = I, det R = 1
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(64, dtype=torch.float64), atol=1e-12)


def test_one_parameter_subgroup():
    """exp(a xi) exp(b xi) = exp((a + b) xi)."""
    xi = _twists(32, 1.1, seed=3)
    for a, b in ((0.3, 0.5), (-0.7, 1.2), (2.0, -0.25)):
        lhs = lie.se3_exp(a * xi) @ lie.se3_exp(b * xi)
        assert torch.allclose(lhs, lie.se3_exp((a + b) * xi), atol=1e-12)


def test_exp_matches_the_matrix_exponential():
    xi = _twists(16, 2.2, seed=5)
    assert torch.allclose(lie.se3_exp(xi), torch.linalg.matrix_exp(lie.se3_hat(xi)), atol=1e-12)
    small = _twists(16, 1e-4, seed=6)
    assert torch.allclose(lie.se3_exp(small), torch.linalg.matrix_exp(lie.se3_hat(small)), atol=1e-14)


def test_hat_vee_inverse_compose():
    xi = _twists(8, 0.8, seed=7)
    assert torch.allclose(lie.se3_vee(lie.se3_hat(xi)), xi)
    h = lie.se3_exp(xi)
    eye = torch.eye(4, dtype=torch.float64).expand_as(h)
    assert torch.allclose(lie.se3_compose(h, lie.se3_inverse(h)), eye, atol=1e-12)
    assert torch.allclose(lie.se3_inverse(h), torch.linalg.inv(h), atol=1e-12)


def test_batched_over_any_leading_shape():
    xi = _twists(24, 0.9).reshape(2, 3, 4, 6)
    h = lie.se3_exp(xi)
    assert h.shape == (2, 3, 4, 4, 4)
    assert torch.allclose(lie.se3_log(h), xi, atol=1e-10)


@pytest.mark.parametrize("eps", [0.05, 0.2, 0.5, 1.0, 2.0])
def test_igso3_density_integrates_to_one(eps):
    w = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    assert float(torch.trapezoid(lie.igso3_density(w, eps), w)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("eps", [0.02, 0.05, 0.1])
def test_igso3_small_scale_second_moment(eps):
    """E[w^2] -> 3 eps^2 as eps -> 0 (the angle of a 3-D isotropic Gaussian)."""
    w = torch.linspace(0, math.pi, 40001, dtype=torch.float64)
    m2 = float(torch.trapezoid(w * w * lie.igso3_density(w, eps), w))
    assert m2 / (3 * eps * eps) == pytest.approx(1.0, abs=3 * eps * eps + 1e-3)


def test_igso3_sampling_matches_its_density():
    eps = 0.6
    omega = lie.igso3_sample(20000, eps, generator=_g(1))
    angle = omega.norm(dim=-1)
    w = torch.linspace(0, math.pi, 4001, dtype=torch.float64)
    pdf = lie.igso3_density(w, eps)
    mean = float(torch.trapezoid(w * pdf, w))
    assert float(angle.mean()) == pytest.approx(mean, abs=4 * float(angle.std()) / math.sqrt(20000))
    axis = omega / angle[:, None]
    assert axis.mean(0).abs().max() < 0.03  # uniform axis


def test_uniform_rotations_are_haar():
    r = lie.random_rotations(20000, generator=_g(2))
    angle = lie.rotation_angle(r)
    # Haar angle density (1 - cos w) / pi: mean pi/2 + 2/pi
    assert float(angle.mean()) == pytest.approx(math.pi / 2 + 2 / math.pi, abs=0.02)
