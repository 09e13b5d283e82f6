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

The statistics are those of :mod:`diffusekit.datastats` (mean, top eigen-pairs, the mean
variance r of the rest of the spectrum, which takes the gain with s_k = r): ``dk.train``
records them for unconditional real-valued data, ``fit_gaussian_stats(pipe, data)`` for any
data set. ``teleport="auto"`` (the solvers' default) starts where the recorded error profile
says skipping is safe (:func:`diffusekit.datastats.teleport_sigma`).
"""

from __future__ import annotations

from typing import Optional

import torch

from diffusekit import datastats
from diffusekit.errors import ConfigError, ShapeError

from .gaussian import point


def fit_gaussian_stats(pipe, data: torch.Tensor, rank: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Record the Gaussian statistics and error profile of ``data`` (n, *sample_shape) in
    ``pipe.buffers`` (what ``dk.train`` does for unconditional data); ``rank`` limits the
    eigen-pairs kept. Returns the stored tensors."""
    if torch.is_tensor(data) and torch.is_complex(data):
        raise ShapeError("data: teleportation supports real-valued states only")
    return datastats.record(pipe, data, rank)


def gaussian_flow(z: torch.Tensor, a_from: float, c_from: float, a_to: float, c_to: float,
                  mean: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor, resvar: float = 0.0) -> torch.Tensor:
    """Exact PF-ODE map of z = x - b y from (a_from, c_from) to (a_to, c_to) for Gaussian data
    N(mean, U diag(eigvals) U^T + resvar (I - U U^T))."""
    shape, dtype = z.shape, z.dtype
    zf = z.flatten(1).to(torch.float64)
    mu = mean.flatten().to(device=z.device, dtype=torch.float64)
    s = eigvals.to(device=z.device, dtype=torch.float64)
    u = eigvecs.to(device=z.device, dtype=torch.float64)
    r = float(resvar)
    res = zf - a_from * mu
    gain = torch.sqrt((a_to ** 2 * s + c_to ** 2) / (a_from ** 2 * s + c_from ** 2))
    iso = ((a_to ** 2 * r + c_to ** 2) / (a_from ** 2 * r + c_from ** 2)) ** 0.5
    coeff = res @ u
    out = a_to * mu + iso * res + (coeff * (gain - iso)) @ u.T
    return out.reshape(shape).to(dtype)


def teleport_state(x: torch.Tensor, process, buffers: dict, t_from: float, t_to: float,
                   y: Optional[torch.Tensor]) -> torch.Tensor:
    """Move a state from ``t_from`` to ``t_to`` with :func:`gaussian_flow` (no network call)."""
    missing = [k for k in datastats.STAT_KEYS if k not in buffers]
    if missing:
        raise ConfigError(
            f"teleport needs the Gaussian data statistics {missing} in pipe.buffers; dk.train records them "
            "for unconditional data, or call diffusekit_solvers.fit_gaussian_stats(pipe, training_data) (they "
            "are saved with the pipeline), or set teleport=0", loc="sampler.teleport")
    if not torch.is_tensor(x) or buffers[datastats.MEAN].numel() != x[0].numel():
        raise ShapeError(f"teleport statistics are for {buffers[datastats.MEAN].numel()} dimensions, the state "
                         f"has {x[0].numel() if torch.is_tensor(x) else type(x).__name__}; refit them with "
                         "fit_gaussian_stats on this pipeline's data")
    p0, p1 = point(process, t_from), point(process, t_to)
    z = x if y is None else x - p0.b * y
    z = gaussian_flow(z, p0.a, p0.c, p1.a, p1.c, buffers[datastats.MEAN], buffers[datastats.EIGVALS],
                      buffers[datastats.EIGVECS], float(buffers[datastats.RESVAR]))
    return z if y is None else z + p1.b * y
