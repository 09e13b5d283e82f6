"""A LieGroup process on SO(3) written only in this file passes the conformance kit.

The process: x_t = x0 exp(sigma(t) [eps]_x) with eps ~ N(0, I_3) in the Lie algebra (a
right-multiplied isotropic Gaussian in tangent coordinates), prior a uniform rotation
(a normalised Gaussian quaternion)."""

from __future__ import annotations

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.random import randn
from diffusekit.testing import check_object


def skew(w: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(w[..., 0])
    return torch.stack([torch.stack([z, -w[..., 2], w[..., 1]], -1),
                        torch.stack([w[..., 2], z, -w[..., 0]], -1),
                        torch.stack([-w[..., 1], w[..., 0], z], -1)], -2)


class SO3(dk.ForwardProcess, dk.LieGroup):
    algebra_dim = 3
    t_min, t_max = 0.01, 1.0

    def hat(self, xi):
        return skew(xi)

    def vee(self, m):
        return torch.stack([m[..., 2, 1], m[..., 0, 2], m[..., 1, 0]], -1)

    def exp(self, xi):
        th = xi.norm(dim=-1, keepdim=True)[..., None]
        small = th < 1e-4
        ths = torch.where(small, torch.ones_like(th), th)
        a = torch.where(small, 1 - th ** 2 / 6, torch.sin(ths) / ths)
        b = torch.where(small, 0.5 - th ** 2 / 24, (1 - torch.cos(ths)) / ths ** 2)
        k = skew(xi)
        eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand(k.shape)
        return eye + a * k + b * (k @ k)

    def log(self, r):
        cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
        th = torch.arccos(cos)[..., None]
        w = self.vee(r - r.transpose(-1, -2)) / 2          # sin(th) * axis
        small = th < 1e-4
        ths = torch.where(small, torch.ones_like(th), th)
        out = torch.where(small, w * (1 + th ** 2 / 6), w * ths / torch.sin(ths).clamp_min(1e-12))
        # near pi sin(th) -> 0: take the axis from the symmetric part (R + I) / 2 = a a^T
        near_pi = th > math.pi - 1e-3
        if bool(near_pi.any()):
            sym = (r + torch.eye(3, dtype=r.dtype, device=r.device)) / 2
            col = sym.diagonal(dim1=-2, dim2=-1).argmax(-1)
            axis = torch.gather(sym, -1, col[..., None, None].expand(*col.shape, 3, 1))[..., 0]
            axis = axis / axis.norm(dim=-1, keepdim=True)
            axis = torch.where((axis * w).sum(-1, keepdim=True) < 0, -axis, axis)
            out = torch.where(near_pi, axis * th, out)
        return out

    def inverse(self, g):
        return g.transpose(-1, -2)

    def sigma(self, t):
        return 1.5 * t

    def perturb(self, x0, t, cond=None, generator=None):
        eps = randn((x0.shape[0], 3), generator, x0.device, x0.dtype)
        x_t = x0 @ self.exp(self.sigma(t)[:, None].to(x0.dtype) * eps)
        return dk.Perturbed(x_t=x_t, t=t, noise=eps, x0=x0)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        q = randn((n, 4), generator, device, torch.float64)
        q = q / q.norm(dim=-1, keepdim=True)
        w, x, y, z = q.unbind(-1)
        r = torch.stack([torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                         torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                         torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
        return r.to(dtype)

    def conformance_example(self, n, generator=None):
        return self.prior(n, (3, 3), generator=generator), None


def test_so3_toy_passes_the_conformance_kit():
    results = check_object("process", SO3(), "so3-toy")
    lines = [r.line() for r in results]
    assert all(r.status == "pass" for r in results), lines
    checks = {r.check for r in results}
    assert any("Lie group" in c for c in checks), lines


def test_kit_catches_a_wrong_log():
    class Broken(SO3):
        def log(self, r):
            return super().log(r) * 1.01

    results = check_object("process", Broken(), "broken")
    assert any(r.status == "fail" and "Lie group" in r.check for r in results)


def test_geodesic_midpoint_on_so3():
    g = SO3()
    a = g.exp(torch.tensor([[0.0, 0.0, 0.4]], dtype=torch.float64))
    b = g.exp(torch.tensor([[0.0, 0.0, 1.2]], dtype=torch.float64))
    mid = g.geodesic(a, b, 0.5)
    assert torch.allclose(g.log(mid), torch.tensor([[0.0, 0.0, 0.8]], dtype=torch.float64), atol=1e-12)


def test_near_pi_log_branch():
    g = SO3()
    xi = torch.tensor([[0.0, math.pi - 1e-6, 0.0], [math.pi - 1e-5, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(g.log(g.exp(xi)), xi, atol=1e-6)


def test_gaussian_samplers_refuse_a_lie_group_process(isolated_registry):
    import diffusekit.builtins
    import diffusekit_sde
    import diffusekit_solvers

    for m in (diffusekit.builtins, diffusekit_sde, diffusekit_solvers):
        isolated_registry.load_module(m)
    with pytest.raises(dk.CompatibilityError, match="AdditiveGaussian"):
        dk.Pipeline(process=SO3(), network=torch.nn.Identity(), parameterization="x0",
                    sampler={"name": "ddim", "steps": 5})
