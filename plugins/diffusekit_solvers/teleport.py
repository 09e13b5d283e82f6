"""Analytical teleportation (Wang & Vastola, "The Unreasonable Effectiveness of Gaussian Score
Approximation for Diffusion Models and its Applications", 2024).

If the data were Gaussian, x0 ~ N(mu, Sigma) with Sigma = U diag(s) U^T, then under
z = x - b y = a x0 + c eps the marginal is N(a mu, a^2 Sigma + c^2 I) and the
probability-flow ODE is linear and diagonal in the eigenbasis of Sigma. Its exact solution from
time T to time t is, per eigen-direction k [derived: the flow of a Gaussian family under a
linear velocity field is the affine map between the two marginals]:

    z_t - a_t mu = sqrt((a_t^2 s_k + c_t^2) / (a_T^2 s_k + c_T^2)) (z_T - a_T mu)

and (c_t / c_T) on the complement of U's span (s = 0). Early in the reverse trajectory (high
noise) real data are close to this Gaussian, so a solver can start at an intermediate time
from this closed form and skip the first part of the trajectory at no network cost.

``fit_gaussian_stats(pipe, data)`` estimates mu and Sigma's eigen-decomposition and stores them
in ``pipe.buffers`` (persisted by ``Pipeline.save`` / ``load`` in model.safetensors); samplers
with ``teleport=f`` read them through the denoiser.
"""

from __future__ import annotations

from typing import Optional

import torch

from diffusekit.errors import ConfigError, ShapeError

from .gaussian import point

MEAN, EIGVALS, EIGVECS = "teleport_mean", "teleport_eigvals", "teleport_eigvecs"


def fit_gaussian_stats(pipe, data: torch.Tensor, rank: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Estimate the data mean and covariance (float64) and store them in ``pipe.buffers``.

    ``data``: (n, *sample_shape) training samples. ``rank``: keep the top ``rank`` eigen-pairs
    (default: all; use a rank for large images, the rest of the spectrum is treated as 0).
    Returns the stored tensors.
    """
    if not torch.is_tensor(data) or data.ndim < 2 or data.shape[0] < 2:
        raise ShapeError(f"data: expected a tensor (n >= 2, *sample_shape), got "
                         f"{tuple(data.shape) if torch.is_tensor(data) else type(data).__name__}")
    if torch.is_complex(data):
        raise ShapeError("data: teleportation supports real-valued states only")
    flat = data.detach().flatten(1).to(torch.float64).cpu()
    mu = flat.mean(0)
    centred = flat - mu
    cov = centred.T @ centred / (flat.shape[0] - 1)
    s, u = torch.linalg.eigh(cov)
    s, u = s.flip(0).clamp_min(0.0), u.flip(1)
    if rank is not None:
        if not 1 <= rank <= s.shape[0]:
            raise ConfigError(f"rank must be in [1, {s.shape[0]}], got {rank}", loc="rank")
        s, u = s[:rank], u[:, :rank]
    stats = {MEAN: mu.reshape(data.shape[1:]), EIGVALS: s, EIGVECS: u.contiguous()}
    pipe.buffers.update({k: v.to(pipe.device) for k, v in stats.items()})
    return stats


def gaussian_flow(z: torch.Tensor, a_from: float, c_from: float, a_to: float, c_to: float,
                  mean: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor) -> torch.Tensor:
    """Exact PF-ODE map of z = x - b y from (a_from, c_from) to (a_to, c_to) for Gaussian data."""
    shape, dtype = z.shape, z.dtype
    zf = z.flatten(1).to(torch.float64)
    mu = mean.flatten().to(device=z.device, dtype=torch.float64)
    s = eigvals.to(device=z.device, dtype=torch.float64)
    u = eigvecs.to(device=z.device, dtype=torch.float64)
    r = zf - a_from * mu
    gain = torch.sqrt((a_to ** 2 * s + c_to ** 2) / (a_from ** 2 * s + c_from ** 2))
    iso = c_to / c_from
    coeff = r @ u
    out = a_to * mu + iso * r + (coeff * (gain - iso)) @ u.T
    return out.reshape(shape).to(dtype)


def teleport_state(x: torch.Tensor, process, buffers: dict, t_from: float, t_to: float,
                   y: Optional[torch.Tensor]) -> torch.Tensor:
    """Move a state from ``t_from`` to ``t_to`` with :func:`gaussian_flow` (no network call)."""
    missing = [k for k in (MEAN, EIGVALS, EIGVECS) if k not in buffers]
    if missing:
        raise ConfigError(
            f"teleport needs the Gaussian data statistics {missing} in pipe.buffers; call "
            "diffusekit_solvers.fit_gaussian_stats(pipe, training_data) first (they are saved with the "
            "pipeline), or set teleport=0", loc="sampler.teleport")
    if buffers[MEAN].numel() != x[0].numel():
        raise ShapeError(f"teleport statistics are for {buffers[MEAN].numel()} dimensions, the state has "
                         f"{x[0].numel()}; refit them with fit_gaussian_stats on this pipeline's data")
    p0, p1 = point(process, t_from), point(process, t_to)
    z = x if y is None else x - p0.b * y
    z = gaussian_flow(z, p0.a, p0.c, p1.a, p1.c, buffers[MEAN], buffers[EIGVALS], buffers[EIGVECS])
    return z if y is None else z + p1.b * y
