"""Pose metrics and the ICP baseline.

* rotation error (degrees): arccos((tr(R_hat^T R) - 1) / 2);
* translation error: |p_hat - p| (Euclidean, in cloud units: the model clouds have radius 1);
* ADD: mean_i |(R x_i + p) - (R_hat x_i + p_hat)| over the model's points x_i (Hinterstoisser
  et al. 2012); ADD-S: the same with the nearest transformed point (symmetric objects);
* recall: the fraction of pairs with rotation error <= ``deg`` and translation error <= ``trans``.

ICP (Besl & McKay 1992), point to point: from an initial pose, repeat {match every moved source
point to its nearest model point; drop pairs farther than ``reject`` times the median distance;
Kabsch on the rest} until the pose stops changing.
"""

from __future__ import annotations

import math

import torch

from . import lie
from .kabsch import kabsch_svd


def rotation_error_deg(h_hat: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    rel = h_hat[..., :3, :3].transpose(-1, -2).double() @ h[..., :3, :3].double()
    return torch.rad2deg(lie.rotation_angle(rel))


def translation_error(h_hat: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return (h_hat[..., :3, 3].double() - h[..., :3, 3].double()).norm(dim=-1)


def add(h_hat: torch.Tensor, h: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """ADD per pair: mean distance between the points moved by the two poses."""
    pts = points.double()
    return (lie.transform(h_hat.double(), pts) - lie.transform(h.double(), pts)).norm(dim=-1).mean(-1)


def add_s(h_hat: torch.Tensor, h: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """ADD-S per pair: mean distance to the closest point (ambiguity of symmetric shapes)."""
    pts = points.double()
    a, b = lie.transform(h_hat.double(), pts), lie.transform(h.double(), pts)
    return torch.cdist(a, b).min(-1).values.mean(-1)


def recall(rot_err: torch.Tensor, trans_err: torch.Tensor, deg: float = 5.0, trans: float = 0.05) -> float:
    return float(((rot_err <= deg) & (trans_err <= trans)).double().mean())


def summary(h_hat: torch.Tensor, h: torch.Tensor, source: torch.Tensor, deg: float = 5.0,
            trans: float = 0.05) -> dict[str, float]:
    """Median rotation / translation error, mean ADD / ADD-S and recall over a batch of pairs.

    ADD is measured on the source cloud moved into the model frame (the points whose pose is
    estimated)."""
    r, t = rotation_error_deg(h_hat, h), translation_error(h_hat, h)
    return {"median_rot_deg": float(r.median()), "median_trans": float(t.median()),
            "mean_rot_deg": float(r.mean()), "add": float(add(h_hat, h, source).mean()),
            "add_s": float(add_s(h_hat, h, source).mean()), "recall": recall(r, t, deg, trans)}


def icp(source: torch.Tensor, model: torch.Tensor, init: torch.Tensor | None = None, iters: int = 50,
        reject: float = 3.0, tol: float = 1e-7) -> torch.Tensor:
    """Point-to-point ICP for batches (B, N, 3) / (B, M, 3) from ``init`` (identity by default)."""
    src, mdl = source.double(), model.double()
    b = src.shape[0]
    h = torch.eye(4, dtype=torch.float64).expand(b, 4, 4).clone() if init is None else init.double().clone()
    for _ in range(iters):
        moved = lie.transform(h, src)
        d = torch.cdist(moved, mdl)
        dist, j = d.min(-1)
        matched = torch.gather(mdl, 1, j[..., None].expand(-1, -1, 3))
        med = dist.median(-1, keepdim=True).values
        w = (dist <= reject * med.clamp_min(1e-12)).double()
        step = kabsch_svd(moved, matched, w)
        h = step @ h
        if float(step[:, :3, :3].diagonal(dim1=-2, dim2=-1).sum(-1).sub(3).abs().max()) < tol and \
                float(step[:, :3, 3].abs().max()) < math.sqrt(tol):
            break
    return h
