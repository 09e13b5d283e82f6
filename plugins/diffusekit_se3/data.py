"""Synthetic registration pairs generated at run time (no download).

A *model* cloud is sampled on the surface of a procedural shape: a primitive (box, sphere,
cylinder, cone, torus) or a random superquadric |x/a|^(2/e2) ... with exponents e1, e2 in
[0.3, 1.8] and axes in [0.35, 1] (sampled through the signed-power parametrisation, then
rescaled so the cloud's diameter is about 2). The *source* cloud is another sample of the same
surface (no exact correspondences), cut by a random plane to keep a ``overlap`` fraction
(partial overlap), moved by the inverse of a random pose (rotation angle uniform in
[0, max_angle] degrees about a uniform axis, translation uniform in [-max_trans, max_trans]^3),
jittered with Gaussian noise and with a fraction of its points replaced by outliers uniform in
the bounding box. The pose H0 maps the source onto the model frame: model ~ R0 source + p0.

Splits are fixed by seed: "train", "val" and "test" draw from disjoint seed streams.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.state import Example

from . import lie

SHAPES = ("box", "sphere", "cylinder", "cone", "torus", "superquadric")
_SPLIT_SEED = {"train": 0, "val": 1_000_003, "test": 2_000_003}


def _spow(x: torch.Tensor, e: float) -> torch.Tensor:
    return torch.sign(x) * x.abs().pow(e)


def surface_points(shape: str, n: int, g: torch.Generator, params: torch.Tensor) -> torch.Tensor:
    """n points (float64) on the surface of ``shape``; ``params`` (5,) in [0, 1) picks its proportions."""
    u = torch.rand(n, generator=g, dtype=torch.float64)
    v = torch.rand(n, generator=g, dtype=torch.float64)
    a, b, c = (0.4 + 0.6 * params[:3]).tolist()
    if shape == "box":
        face = torch.randint(0, 6, (n,), generator=g)
        sign = torch.where(face % 2 == 0, 1.0, -1.0).to(torch.float64)
        local = torch.stack([u * 2 - 1, v * 2 - 1, sign], -1)
        idx = (torch.arange(3)[None] - (face // 2)[:, None]) % 3    # the +-1 coordinate on face axis
        return torch.gather(local, 1, idx) * torch.tensor([a, b, c], dtype=torch.float64)
    if shape == "sphere":
        d = torch.randn(n, 3, generator=g, dtype=torch.float64)
        return d / d.norm(dim=-1, keepdim=True) * torch.tensor([a, b, c], dtype=torch.float64)
    if shape == "cylinder":
        phi = 2 * math.pi * u
        return torch.stack([a * torch.cos(phi), a * torch.sin(phi), c * (2 * v - 1)], -1)
    if shape == "cone":
        phi = 2 * math.pi * u
        h = 1 - torch.sqrt(v)                       # uniform on the lateral surface
        return torch.stack([a * h * torch.cos(phi), a * h * torch.sin(phi), c * (2 * (1 - h) - 1)], -1)
    if shape == "torus":
        big, small = 0.7, 0.15 + 0.2 * float(params[3])
        phi, psi = 2 * math.pi * u, 2 * math.pi * v
        return torch.stack([(big + small * torch.cos(psi)) * torch.cos(phi),
                            (big + small * torch.cos(psi)) * torch.sin(phi), small * torch.sin(psi)], -1)
    # superquadric: eta in [-pi/2, pi/2], omega in [-pi, pi)
    e1, e2 = 0.3 + 1.5 * float(params[3]), 0.3 + 1.5 * float(params[4])
    eta = (u * 2 - 1) * math.pi / 2
    om = (v * 2 - 1) * math.pi
    ce, se = _spow(torch.cos(eta), e1), _spow(torch.sin(eta), e1)
    return torch.stack([a * ce * _spow(torch.cos(om), e2), b * ce * _spow(torch.sin(om), e2), c * se], -1)


def random_pose(g: torch.Generator, max_angle: float, max_trans: float) -> torch.Tensor:
    axis = torch.randn(3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm()
    angle = math.radians(max_angle) * float(torch.rand(1, generator=g, dtype=torch.float64))
    trans = (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1) * max_trans
    return lie.from_rt(lie.so3_exp(axis * angle), trans)


def compound_spec(g: torch.Generator, parts: int = 3) -> list:
    """A union of ``parts`` random primitives / superquadrics, each scaled to 0.35-0.65, rotated
    and offset at random: generically without symmetries (a single primitive, e.g. a sphere or
    a box, has rotational symmetries that make its pose ambiguous)."""
    spec = []
    for _ in range(parts):
        shape = SHAPES[int(torch.randint(0, len(SHAPES), (1,), generator=g))]
        params = torch.rand(5, generator=g, dtype=torch.float64)
        scale = 0.35 + 0.3 * float(torch.rand(1, generator=g, dtype=torch.float64))
        rot = lie.random_rotations(1, g)[0]
        offset = 0.6 * (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1)
        spec.append((shape, params, scale, rot, offset))
    return spec


def sample_compound(spec: list, n: int, g: torch.Generator) -> torch.Tensor:
    """n points on the surface of a compound shape (an equal share per part)."""
    parts = len(spec)
    counts = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    return torch.cat([surface_points(shape, c, g, params) * scale @ rot.T + offset
                      for (shape, params, scale, rot, offset), c in zip(spec, counts)])


def make_pair(g: torch.Generator, n_source: int, n_model: int, overlap: tuple[float, float], noise: float,
              outliers: float, max_angle: float, max_trans: float, parts: int = 3):
    """(H0 (4, 4), source (n_source, 3), model (n_model, 3)) in float64."""
    spec = compound_spec(g, parts)
    dense = sample_compound(spec, 2048, g)
    centre = dense.mean(0)
    scale = 1.0 / (dense - centre).norm(dim=-1).max().clamp_min(1e-9)
    model = (sample_compound(spec, n_model, g) - centre) * scale
    src = (sample_compound(spec, 4 * n_source, g) - centre) * scale   # other points of the same surface
    g2 = g
    # partial overlap: keep the part of the source in front of a random plane
    keep_frac = overlap[0] + (overlap[1] - overlap[0]) * float(torch.rand(1, generator=g2, dtype=torch.float64))
    direction = torch.randn(3, generator=g2, dtype=torch.float64)
    direction = direction / direction.norm()
    proj = src @ direction
    cut = torch.quantile(proj, 1 - keep_frac)
    kept = src[proj >= cut]
    idx = torch.randperm(kept.shape[0], generator=g2)[:n_source]
    if idx.numel() < n_source:
        idx = torch.cat([idx, idx[torch.randint(0, idx.numel(), (n_source - idx.numel(),), generator=g2)]])
    src = kept[idx] + noise * torch.randn(n_source, 3, generator=g2, dtype=torch.float64)
    h0 = random_pose(g2, max_angle, max_trans)
    src = lie.transform(lie.se3_inverse(h0)[None], src[None])[0]       # source frame
    k = int(round(outliers * n_source))
    if k:
        lo, hi = src.min(0).values, src.max(0).values
        pos = torch.randperm(n_source, generator=g2)[:k]
        src[pos] = lo + (hi - lo) * torch.rand(k, 3, generator=g2, dtype=torch.float64)
    return h0, src, model


class RegistrationDataConfig(ComponentConfig):
    split: Literal["train", "val", "test"] = "train"
    n: int = Field(2000, ge=1, description="number of pairs")
    n_source: int = Field(128, ge=8, description="points in the (partial) source cloud")
    n_model: int = Field(128, ge=8, description="points in the model cloud")
    overlap_min: float = Field(0.7, gt=0, le=1, description="smallest kept fraction of the source surface")
    overlap_max: float = Field(1.0, gt=0, le=1, description="largest kept fraction")
    noise: float = Field(0.01, ge=0, description="Gaussian jitter of the source points (cloud radius 1)")
    outliers: float = Field(0.05, ge=0, lt=1, description="fraction of source points replaced by outliers")
    max_angle: float = Field(60.0, ge=0, le=180, description="largest rotation angle (degrees)")
    max_trans: float = Field(0.5, ge=0, description="largest translation per axis")
    seed: int = 0


def registration_pairs(split: str = "train", n: int = 2000, n_source: int = 128, n_model: int = 128,
                       overlap_min: float = 0.7, overlap_max: float = 1.0, noise: float = 0.01,
                       outliers: float = 0.05, max_angle: float = 60.0, max_trans: float = 0.5,
                       seed: int = 0) -> Example:
    """``Example(x=H0 (n, 4, 4), cond={"source": (n, n_source, 3), "model": (n, n_model, 3)})``."""
    g = torch.Generator().manual_seed(seed * 7_919 + _SPLIT_SEED[split])
    hs, ss, ms = [], [], []
    for _ in range(n):
        h, s, m = make_pair(g, n_source, n_model, (overlap_min, overlap_max), noise, outliers, max_angle, max_trans)
        hs.append(h), ss.append(s), ms.append(m)
    return Example(torch.stack(hs).float(), {"source": torch.stack(ss).float(), "model": torch.stack(ms).float()})
