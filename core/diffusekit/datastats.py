"""Gaussian statistics of the training data, recorded by ``dk.train`` in ``pipe.buffers``.

A sampler can use them to skip the high-noise part of a trajectory, where data look Gaussian
(analytical teleportation), and to decide how far that is safe. Only generic statistics live
here; what a sampler does with them is the sampler's business.

The Gaussian model is x0 ~ N(mu, Sigma) with Sigma = U diag(s) U^T + r (I - U U^T): the top-k
eigen-pairs of the sample covariance and the mean variance r of the rest of the spectrum (k = D,
r = 0 for small D). Buffers (all float32 except where noted):

* ``data_mean`` (the sample shape), ``data_eigvals`` (k,), ``data_eigvecs`` (D, k),
  ``data_resvar`` (1,) = r;
* ``data_gauss_sigma`` (m,) and ``data_gauss_err`` (m,): the Gaussian model's error profile.
  For x = x0 + sigma eps (a noisy sample at noise-to-signal ratio sigma, i.e. x_t / a_t of any
  affine process with sigma = c_t / a_t), err(sigma) is the RMS per dimension of
  eps_G - eps_D = (x0_D - x0_G) / sigma, where x0_D is the posterior mean of the empirical
  distribution of ``n_ref`` training samples and x0_G that of the Gaussian fitted to those same
  samples (so sampling error in their mean does not count as non-Gaussianity), at
  ``n_query`` noisy versions of other training samples. The empirical posterior memorises at
  small sigma, so err is over-estimated there: a rule built on it errs towards skipping less.

Statistics are recorded for real floating-point tensor data of at most ``MAX_DIM`` dimensions
and without a condition (the statistics are those of the marginal data distribution, which a
conditional model does not sample from).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .errors import ConfigError, ShapeError

MEAN, EIGVALS, EIGVECS, RESVAR = "data_mean", "data_eigvals", "data_eigvecs", "data_resvar"
PROFILE_SIGMA, PROFILE_ERR = "data_gauss_sigma", "data_gauss_err"
STAT_KEYS = (MEAN, EIGVALS, EIGVECS, RESVAR)

#: full eigendecomposition up to this dimension; above it a randomized low-rank one
FULL_DIM = 1024
#: no statistics above this dimension (the profile costs n_query * n_ref * D per noise level)
MAX_DIM = 16384
#: eigen-pairs kept (the rest of the spectrum is summarised by its mean variance)
MAX_RANK = 128
#: rows used (a fixed random subset of larger data sets)
MAX_ROWS = 10_000


def has_statistics(buffers: dict) -> bool:
    return all(k in buffers for k in STAT_KEYS)


def eligible(x, cond=None) -> bool:
    """Whether ``dk.train`` records statistics for this data (see the module docstring)."""
    return (torch.is_tensor(x) and x.is_floating_point() and x.ndim >= 2 and x.shape[0] >= 8
            and cond is None and x[0].numel() <= MAX_DIM)


def _rows(x: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    flat = x.detach().flatten(1).to(device="cpu", dtype=torch.float64)
    if flat.shape[0] > limit:
        idx = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(seed))[:limit]
        flat = flat[idx]
    return flat


def gaussian_statistics(x: torch.Tensor, rank: Optional[int] = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Mean, top eigen-pairs and residual variance of the samples ``x`` (n, *sample_shape).

    ``rank``: eigen-pairs to keep (default: all up to :data:`MAX_RANK`; eigenvalues below
    1e-10 of the largest are dropped)."""
    if not torch.is_tensor(x) or x.ndim < 2 or x.shape[0] < 2:
        raise ShapeError(f"data: expected a tensor (n >= 2, *sample_shape), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if not x.is_floating_point():
        raise ShapeError(f"data: Gaussian statistics need real floating-point samples, got {x.dtype}")
    flat = _rows(x, MAX_ROWS, seed)
    n, d = flat.shape
    mu = flat.mean(0)
    centred = flat - mu
    total = float(centred.pow(2).sum()) / (n - 1)
    limit = min(d, MAX_RANK) if rank is None else rank
    if not 1 <= limit <= d:
        raise ConfigError(f"rank must be in [1, {d}], got {rank}", loc="rank")
    if d <= FULL_DIM:
        s, u = torch.linalg.eigh(centred.T @ centred / (n - 1))
        s, u = s.flip(0).clamp_min(0.0), u.flip(1)
    else:
        q = min(limit + 10, n - 1, d)
        with torch.random.fork_rng(devices=[]):  # svd_lowrank draws from the global generator
            torch.manual_seed(seed)
            _, sv, v = torch.svd_lowrank(centred, q=q, niter=4)
        s, u = sv.pow(2) / (n - 1), v
    keep = min(limit, int((s > 1e-10 * max(float(s[0]), 1e-300)).sum()) or 1)
    s, u = s[:keep], u[:, :keep]
    resvar = max(total - float(s.sum()), 0.0) / (d - keep) if keep < d else 0.0
    return {MEAN: mu.reshape(x.shape[1:]).float(), EIGVALS: s.float(), EIGVECS: u.contiguous().float(),
            RESVAR: torch.tensor([resvar], dtype=torch.float32)}


def gaussian_posterior_mean(xt: torch.Tensor, sigma: float, stats: dict[str, torch.Tensor]) -> torch.Tensor:
    """E[x0 | x0 + sigma eps = xt] under the Gaussian model, for flat xt (B, D), in xt's dtype."""
    mu = stats[MEAN].flatten().to(xt)
    s, u, r = stats[EIGVALS].to(xt), stats[EIGVECS].to(xt), float(stats[RESVAR])
    res = xt - mu
    coeff = res @ u
    iso = r / (r + sigma ** 2)
    return mu + iso * res + (coeff * (s / (s + sigma ** 2) - iso)) @ u.T


def _gaussian_error(query: torch.Tensor, ref: torch.Tensor, sigmas: list[float], eps: torch.Tensor) -> list[float]:
    """RMS per dimension of (x0_D - x0_G) / sigma at each sigma (see the module docstring)."""
    n_query, d = query.shape
    # the Gaussian fitted to the reference set itself: the two posteriors then agree to first
    # order in 1 / sigma^2 (mean and covariance), so the sampling error of the reference set's
    # mean does not count
    stats = gaussian_statistics(ref, rank=min(MAX_RANK, d, ref.shape[0] - 1))
    ref_sq = ref.pow(2).sum(1)
    errs = []
    for sigma in sigmas:
        xt = query + sigma * eps
        # |xt - ref_j|^2 up to a per-row constant; softmax over the references
        logits = (xt @ ref.T - 0.5 * ref_sq) / sigma ** 2
        x0_d = torch.softmax(logits, dim=1) @ ref
        x0_g = gaussian_posterior_mean(xt, sigma, stats)
        errs.append(float((x0_d - x0_g).pow(2).sum()) / (n_query * d) / sigma ** 2)
    return errs


def _gaussian_like(n: int, stats: dict[str, torch.Tensor], g: torch.Generator) -> torch.Tensor:
    """n samples (flat, float64) of the Gaussian model ``stats``."""
    mu = stats[MEAN].flatten().double()
    s, u, r = stats[EIGVALS].double(), stats[EIGVECS].double(), float(stats[RESVAR])
    w = torch.randn(n, s.shape[0], generator=g, dtype=torch.float64) * s.sqrt()
    z = torch.randn(n, mu.shape[0], generator=g, dtype=torch.float64)
    perp = z - (z @ u) @ u.T
    return mu + w @ u.T + math.sqrt(r) * perp


def error_profile(x: torch.Tensor, n_ref: int = 2048, n_query: int = 256, levels: int = 20,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """The Gaussian model's noise-prediction error against the empirical distribution over
    ``levels`` noise-to-signal ratios, log-spaced from 0.05 to 50 times the data's RMS scale
    (see the module docstring).

    The empirical posterior of a finite reference set is itself noisy (and memorises at small
    sigma), so the same measurement is repeated on samples of the fitted Gaussian, where the true
    error is 0: what it reports is this estimator's floor, and the profile is
    sqrt(max(e_data^2 - e_floor^2, 0))."""
    d = x[0].numel()
    # at most about 4e8 multiply-adds per profile, both passes (a fraction of a second on one
    # core: dk.train computes it for every unconditional run); float32 arithmetic
    n_ref = max(256, min(n_ref, int(2e8 / (n_query * d * levels))))
    flat = _rows(x, n_ref + n_query, seed + 1)
    if flat.shape[0] < 8:
        raise ShapeError("data: the error profile needs at least 8 samples")
    n_query = min(n_query, flat.shape[0] // 4)
    query, ref = flat[:n_query], flat[n_query:]
    d = flat.shape[1]
    mu = flat.mean(0)
    scale = math.sqrt(max(float((flat - mu).pow(2).mean()), 1e-12))
    sigmas = torch.logspace(math.log10(0.05 * scale), math.log10(50 * scale), levels, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 2)
    eps = torch.randn(query.shape, generator=g, dtype=torch.float64)
    data_err = _gaussian_error(query.float(), ref.float(), sigmas.tolist(), eps.float())
    twin = _gaussian_like(flat.shape[0], gaussian_statistics(flat, rank=min(MAX_RANK, d, flat.shape[0] - 1)), g)
    floor = _gaussian_error(twin[:n_query].float(), twin[n_query:].float(), sigmas.tolist(), eps.float())
    errs = [math.sqrt(max(e - f, 0.0)) for e, f in zip(data_err, floor)]
    return {PROFILE_SIGMA: sigmas.float(), PROFILE_ERR: torch.tensor(errs, dtype=torch.float32)}


def record(pipe, x: torch.Tensor, rank: Optional[int] = None, profile: bool = True) -> dict[str, torch.Tensor]:
    """Compute the statistics (and the error profile) of ``x`` and store them in ``pipe.buffers``
    (saved and loaded with the pipeline). Returns them."""
    stats = gaussian_statistics(x, rank)
    if profile:
        stats.update(error_profile(x))
    device = pipe.device
    pipe.buffers.update({k: v.to(device) for k, v in stats.items()})
    return stats


def teleport_sigma(buffers: dict, tol: float) -> Optional[float]:
    """The smallest noise-to-signal ratio sigma* of the recorded profile such that following the
    Gaussian model's probability-flow ODE from sigma = infinity down to sigma* displaces the
    state by at most ``tol`` times sigma* (RMS per dimension); None without a profile.

    Along the PF-ODE in x / a coordinates, dx/dsigma = eps_hat, so two denoisers whose noise
    predictions differ by e(sigma) drift apart by at most the integral of e from sigma* to the
    start. The displacement bound is delta(sigma*) = (1 / sigma*) * int_{sigma*}^{inf} e(s) ds
    (trapezoidal rule on the profile, e taken as 0 above its last level, where it has decayed);
    the noise still present at sigma* is sigma* per dimension, so delta compares the error made
    by skipping with the noise the remaining steps will remove.
    """
    if PROFILE_SIGMA not in buffers or PROFILE_ERR not in buffers:
        return None
    sig = buffers[PROFILE_SIGMA].double().cpu().tolist()
    err = buffers[PROFILE_ERR].double().cpu().tolist()
    best = None
    integral = 0.0
    for j in range(len(sig) - 1, -1, -1):
        if j < len(sig) - 1:
            integral += 0.5 * (err[j] + err[j + 1]) * (sig[j + 1] - sig[j])
        if integral / sig[j] > tol:
            break
        best = sig[j]
    return best
