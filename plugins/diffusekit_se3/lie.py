"""Lie-group maths of SO(3) and SE(3), batched over any leading shape, float64-safe.

Coordinates: a rotation vector omega in R^3 (axis * angle) for so(3); a twist xi = (omega, v)
in R^6 for se(3) (rotation part first). hat / vee map coordinates to and from algebra
matrices. With theta = |omega| and W = hat(omega):

* SO(3) exp (Rodrigues): R = I + A W + B W^2, A = sin(theta)/theta, B = (1 - cos theta)/theta^2;
* SE(3) exp: [[R, V v], [0, 1]] with V = I + B W + C W^2, C = (theta - sin theta)/theta^3;
* SO(3) log: theta = arccos((tr R - 1)/2), omega = theta / (2 sin theta) vee(R - R^T); near
  theta = pi, where sin theta -> 0, the axis is read from the symmetric part
  (R + I)/2 = a a^T + cos(theta)(I - a a^T)/... (the column of largest norm of R + I, sign
  fixed by the skew part);
* SE(3) log: omega = log R, v = V^{-1} p with V^{-1} = I - W/2 + D W^2,
  D = (1 - (theta/2) cot(theta/2)) / theta^2.

Below theta = 1e-2 (float64: 1e-2 keeps the truncation error of the Taylor series below
1e-13) the coefficients use their Taylor series: A = 1 - th^2/6 + th^4/120,
B = 1/2 - th^2/24 + th^4/720, C = 1/6 - th^2/120 + th^4/5040, D = 1/12 + th^2/720 + th^4/30240.

IGSO(3) (isotropic Gaussian on SO(3), as in Leach et al. 2022 / Yim et al. 2023): rotation
angle density on [0, pi]
    p(w; e) = (1 - cos w)/pi * sum_l (2l + 1) exp(-l(l+1) e^2 / 2) sin((l + 1/2) w) / sin(w/2),
axis uniform on the sphere; sampled by inverse CDF on a float64 grid.
"""

from __future__ import annotations

import math

import torch

_SMALL = 1e-2


def so3_hat(omega: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> skew-symmetric (..., 3, 3)."""
    x, y, z = omega.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([torch.stack([o, -z, y], -1),
                        torch.stack([z, o, -x], -1),
                        torch.stack([-y, x, o], -1)], -2)


def so3_vee(m: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric (..., 3, 3) -> (..., 3) (the skew part of any matrix)."""
    return 0.5 * torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                              m[..., 1, 0] - m[..., 0, 1]], -1)


def se3_hat(xi: torch.Tensor) -> torch.Tensor:
    """Twist (..., 6) = (omega, v) -> algebra matrix (..., 4, 4)."""
    top = torch.cat([so3_hat(xi[..., :3]), xi[..., 3:, None]], -1)
    bottom = torch.zeros(*xi.shape[:-1], 1, 4, dtype=xi.dtype, device=xi.device)
    return torch.cat([top, bottom], -2)


def se3_vee(m: torch.Tensor) -> torch.Tensor:
    """Algebra matrix (..., 4, 4) -> twist (..., 6) = (omega, v)."""
    return torch.cat([so3_vee(m[..., :3, :3]), m[..., :3, 3]], -1)


def _coefficients(theta: torch.Tensor):
    """A, B, C of the exponentials (theta = |omega|, shape (..., 1, 1)), Taylor below 1e-2."""
    small = theta < _SMALL
    th = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(th) / th)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - torch.cos(th)) / (th * th))
    c = torch.where(small, 1.0 / 6 - t2 / 120 + t2 * t2 / 5040, (th - torch.sin(th)) / (th * th * th))
    return a, b, c


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (..., 3) -> rotation matrices (..., 3, 3) (Rodrigues)."""
    theta = omega.norm(dim=-1)[..., None, None]
    a, b, _ = _coefficients(theta)
    w = so3_hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * w + b * (w @ w)


def so3_log(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3) with angle in [0, pi].

    The angle is atan2(|vee(R)|, (tr R - 1)/2), well conditioned at every angle (arccos of
    the trace loses digits near 0 and pi)."""
    cos = (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    skew = so3_vee(r)                                   # sin(theta) * axis
    theta = torch.atan2(skew.norm(dim=-1), cos)[..., None]
    small = theta < _SMALL
    th = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    # theta / sin(theta): Taylor 1 + th^2/6 + 7 th^4/360 near 0
    factor = torch.where(small, 1 + t2 / 6 + 7 * t2 * t2 / 360, th / torch.sin(th).clamp_min(1e-300))
    out = factor * skew
    near_pi = theta > math.pi - _SMALL
    if bool(near_pi.any()):
        # sin(theta) -> 0: read the axis from the symmetric part (R + R^T)/2 - cos I = (1 - cos) a a^T
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        b = (r + r.transpose(-1, -2)) / 2 - cos[..., None, None] * eye
        col = b.diagonal(dim1=-2, dim2=-1).argmax(-1)
        pick = torch.gather(b, -1, col[..., None, None].expand(*col.shape, 3, 1))[..., 0]
        axis = pick / pick.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        sign = torch.where((axis * skew).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(r.dtype)
        out = torch.where(near_pi, sign * axis * theta, out)
    return out


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Twists (..., 6) = (omega, v) -> homogeneous matrices (..., 4, 4)."""
    omega, v = xi[..., :3], xi[..., 3:]
    theta = omega.norm(dim=-1)[..., None, None]
    a, b, c = _coefficients(theta)
    w = so3_hat(omega)
    w2 = w @ w
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device)
    rot = eye + a * w + b * w2
    vmat = eye + b * w + c * w2
    p = (vmat @ v[..., None])[..., 0]
    return from_rt(rot, p)


def se3_log(h: torch.Tensor) -> torch.Tensor:
    """Homogeneous matrices (..., 4, 4) -> twists (..., 6) = (omega, v)."""
    rot, p = h[..., :3, :3], h[..., :3, 3]
    omega = so3_log(rot)
    theta = omega.norm(dim=-1)[..., None, None]
    small = theta < _SMALL
    th = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    half = th / 2
    d = torch.where(small, 1.0 / 12 + t2 / 720 + t2 * t2 / 30240,
                    (1 - half * torch.cos(half) / torch.sin(half).clamp_min(1e-300)) / (th * th))
    w = so3_hat(omega)
    eye = torch.eye(3, dtype=h.dtype, device=h.device)
    vinv = eye - w / 2 + d * (w @ w)
    return torch.cat([omega, (vinv @ p[..., None])[..., 0]], -1)


def from_rt(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """[[R, t], [0, 1]] from (..., 3, 3) and (..., 3)."""
    top = torch.cat([rot, trans[..., None]], -1)
    bottom = torch.zeros(*rot.shape[:-2], 1, 4, dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], -2)


def se3_inverse(h: torch.Tensor) -> torch.Tensor:
    """[[R^T, -R^T t], [0, 1]]."""
    rt = h[..., :3, :3].transpose(-1, -2)
    return from_rt(rt, -(rt @ h[..., :3, 3:])[..., 0])


def se3_compose(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return g @ h


def transform(h: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply poses (B, 4, 4) to point clouds (B, N, 3): R x + t."""
    return points @ h[..., :3, :3].transpose(-1, -2) + h[..., None, :3, 3]


def rotation_angle(r: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of rotations (..., 3, 3): arccos((tr R - 1)/2), evaluated as
    atan2(|vee(R)|, (tr R - 1)/2) so that small angles keep their digits."""
    return torch.atan2(so3_vee(r).norm(dim=-1), (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2)


# ------------------------------------------------------------------------------ IGSO(3)
def igso3_density(w: torch.Tensor, eps: float) -> torch.Tensor:
    """Density of the rotation angle w in [0, pi] of IGSO(3) with scale ``eps`` (float64).

    The series is summed until exp(-l(l+1) eps^2 / 2) < 1e-30 (about 12 / eps terms). Below
    eps = 0.01 (over 1,200 terms) the Gaussian limit is used: the angle of omega ~ N(0, eps^2 I)
    (a Maxwell law) times the Haar volume ratio (1 - cos w)/(w^2/2), renormalised on [0, pi]."""
    w = w.to(torch.float64)
    if eps < 0.01:
        # |omega| of omega ~ N(0, eps^2 I_3) (Maxwell), corrected by the volume (1 - cos w)/(w^2/2)
        # to first order: exact limit as eps -> 0
        x = w.clamp_min(1e-12)
        f = math.sqrt(2 / math.pi) * x * x / eps ** 3 * torch.exp(-x * x / (2 * eps * eps))
        return f * (1 - torch.cos(x)) / (x * x / 2) * _maxwell_norm(eps)
    terms = int(math.ceil(math.sqrt(2 * 69.1) / eps)) + 2
    ls = torch.arange(terms, dtype=torch.float64)
    half = (w / 2).clamp_min(1e-12)
    series = ((2 * ls + 1) * torch.exp(-ls * (ls + 1) * eps * eps / 2) *
              torch.sin((ls + 0.5) * w[..., None]) / torch.sin(half)[..., None]).sum(-1)
    return (1 - torch.cos(w)) / math.pi * series


_NORM_CACHE: dict[float, float] = {}


def _maxwell_norm(eps: float) -> float:
    """Renormalisation of the volume-corrected Maxwell density on [0, pi] (float64 trapezoid)."""
    if eps not in _NORM_CACHE:
        w = torch.linspace(1e-9, math.pi, 20001, dtype=torch.float64)
        f = math.sqrt(2 / math.pi) * w * w / eps ** 3 * torch.exp(-w * w / (2 * eps * eps))
        f = f * (1 - torch.cos(w)) / (w * w / 2)
        _NORM_CACHE[eps] = 1.0 / float(torch.trapezoid(f, w))
    return _NORM_CACHE[eps]


def igso3_sample(n: int, eps: float, generator=None, grid: int = 4096) -> torch.Tensor:
    """n rotation vectors of IGSO(3)(eps): angle by inverse CDF on a float64 grid, uniform axis."""
    w = torch.linspace(0.0, math.pi, grid, dtype=torch.float64)
    pdf = igso3_density(w, eps)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((pdf[1:] + pdf[:-1]) / 2 * (w[1] - w[0]), 0)])
    cdf = cdf / cdf[-1]
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    idx = torch.searchsorted(cdf, u).clamp(1, grid - 1)
    c0, c1 = cdf[idx - 1], cdf[idx]
    angle = w[idx - 1] + (u - c0) / (c1 - c0).clamp_min(1e-300) * (w[idx] - w[idx - 1])
    axis = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return axis * angle[:, None]


def random_rotations(n: int, generator=None, dtype=torch.float64) -> torch.Tensor:
    """Uniform (Haar) rotations from normalised Gaussian quaternions."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    return quaternion_to_matrix(q).to(dtype)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) = (w, x, y, z) -> rotation matrices (..., 3, 3)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
