"""Weighted rigid alignment (Kabsch / Horn) in plain tensor ops that export to ONNX.

Given points x_i, y_i and weights w_i >= 0, find the rotation R and translation p minimising
sum_i w_i |R x_i + p - y_i|^2. With weighted centroids cx, cy and the cross-covariance
S = sum_i w_i (x_i - cx)(y_i - cy)^T, Horn (1987) shows that the optimal R is the rotation of
the unit quaternion q that maximises q^T N q, N the symmetric 4x4 matrix

    [[Sxx+Syy+Szz, Syz-Szy,      Szx-Sxz,      Sxy-Syx     ],
     [Syz-Szy,     Sxx-Syy-Szz,  Sxy+Syx,      Szx+Sxz     ],
     [Szx-Sxz,     Sxy+Syx,     -Sxx+Syy-Szz,  Syz+Szy     ],
     [Sxy-Syx,     Szx+Sxz,      Syz+Szy,     -Sxx-Syy+Szz ]],

i.e. its eigenvector of the largest eigenvalue; then p = cy - R cx. Unlike the SVD form this
always gives a proper rotation (det R = 1). The eigenvector is found without an eigensolver
(ONNX has none): A = N + |N|_F I is positive semi-definite with the same top eigenvector, and
k repeated squarings A <- A^2 / |A^2|_F compute A^(2^k), which converges to q q^T (a gap ratio
of 1 - 1e-6 still vanishes after k = 30: (1 - 1e-6)^(2^30) ~ e^-1000). q is the column of
largest norm. Only matmuls, norms, argmax and gather: exportable and differentiable.
"""

from __future__ import annotations

import torch

from .lie import from_rt, quaternion_to_matrix

SQUARINGS = 30


def horn_matrix(s: torch.Tensor) -> torch.Tensor:
    """Horn's N (..., 4, 4) from the cross-covariance S (..., 3, 3) (S[a, b] = sum x_a y_b)."""
    sxx, sxy, sxz = s[..., 0, 0], s[..., 0, 1], s[..., 0, 2]
    syx, syy, syz = s[..., 1, 0], s[..., 1, 1], s[..., 1, 2]
    szx, szy, szz = s[..., 2, 0], s[..., 2, 1], s[..., 2, 2]
    rows = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def top_eigenvector(n: torch.Tensor, squarings: int = SQUARINGS) -> torch.Tensor:
    """Unit eigenvector (..., 4) of the largest eigenvalue of symmetric N (..., 4, 4)."""
    fro = n.flatten(-2).norm(dim=-1).clamp_min(1e-30)[..., None, None]
    eye = torch.eye(4, dtype=n.dtype, device=n.device)
    a = n / fro + eye                        # PSD, eigenvalues in [0, 2]
    for _ in range(squarings):
        a = a @ a
        a = a / a.flatten(-2).norm(dim=-1).clamp_min(1e-30)[..., None, None]
    col = a.norm(dim=-2).argmax(-1)          # the column of largest norm is prop. to q
    q = torch.gather(a, -1, col[..., None, None].expand(*col.shape, 4, 1))[..., 0]
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)   # w >= 0


def cross_covariance(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None):
    """Weighted centroids cx, cy (B, 3) and cross-covariance S = sum_i w_i (x_i - cx)(y_i - cy)^T."""
    if weights is None:
        weights = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
    w = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    cx = (w[..., None] * x).sum(-2)
    cy = (w[..., None] * y).sum(-2)
    s = ((x - cx[..., None, :]) * w[..., None]).transpose(-1, -2) @ (y - cy[..., None, :])
    return cx, cy, s


def kabsch(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pose H (B, 4, 4) minimising sum_i w_i |R x_i + p - y_i|^2 for x, y (B, N, 3), w (B, N)."""
    cx, cy, s = cross_covariance(x, y, weights)
    rot = quaternion_to_matrix(top_eigenvector(horn_matrix(s)))
    return from_rt(rot, cy - (rot @ cx[..., None])[..., 0])


def kabsch_svd(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The SVD form (reference for tests and ICP): R = V diag(1, 1, det(V U^T)) U^T."""
    cx, cy, s = cross_covariance(x, y, weights)
    u, _, vh = torch.linalg.svd(s)
    v = vh.transpose(-1, -2)
    d = torch.det(v @ u.transpose(-1, -2))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    rot = v @ fix @ u.transpose(-1, -2)
    return from_rt(rot, cy - (rot @ cx[..., None])[..., 0])
