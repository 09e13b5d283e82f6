"""Conformance checks for processes, parameterizations and samplers."""

from __future__ import annotations

import torch

from ..process import SDE, AdditiveGaussian, bcast
from ..random import randn_like


def check_process(process, dim: int = 2, n: int = 20_000, t_end: float = 0.5, steps: int = 500,
                  seed: int = 0, x0_value: float = 1.0) -> dict[str, float]:
    """Simulate the forward SDE by Euler-Maruyama from a point mass and compare mean / std
    with the closed-form marginal a(t) x0 (+ b y), c(t). Returns the absolute errors.

    The process must be SDE and AdditiveGaussian (b = 0, unconditional); raises AssertionError
    if errors exceed 5 standard errors plus the O(dt) bias.
    """
    assert isinstance(process, SDE) and isinstance(process, AdditiveGaussian)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.full((n, dim), x0_value, dtype=torch.float64)
    t0 = process.train_t_min
    ts = torch.linspace(t0, t_end, steps + 1, dtype=torch.float64)
    a0, _, c0 = process.coefficients(ts[:1])
    x = a0 * x0 + c0 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    for i in range(steps):
        t = ts[i].expand(n)
        dt = ts[i + 1] - ts[i]
        x = x + process.drift(x, t) * dt + bcast(process.diffusion(t), x) * torch.sqrt(dt) * randn_like(x, g)
    a, _, c = process.coefficients(ts[-1:].to(torch.float64))
    mean_err = float((x.mean() - a * x0_value).abs())
    std_err = float((x.std() - c).abs())
    tol_mean = 5 * float(c) / (n * dim) ** 0.5 + 5.0 / steps * abs(x0_value)
    tol_std = 5 * float(c) / (2 * n * dim) ** 0.5 + 5.0 / steps * float(c)
    assert mean_err < tol_mean, f"mean error {mean_err:.3g} > {tol_mean:.3g}"
    assert std_err < tol_std, f"std error {std_err:.3g} > {tol_std:.3g}"
    return {"mean_err": mean_err, "std_err": std_err}


def check_parameterization(process, shape=(16, 3), seed: int = 0, atol: float = 1e-4) -> None:
    """x0 / eps / score / v conversions of :class:`Prediction` must be mutually consistent."""
    from ..parameterization import Prediction

    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.linspace(process.t_min, process.t_max * 0.9, shape[0], dtype=torch.float64)
    a, b, c = process.coefficients(t)
    x_t = bcast(a, x0) * x0 + bcast(c, x0) * eps
    ref = Prediction(process, x_t, t, x0=x0, eps=eps)
    for kind in ("x0", "eps", "score", "v"):
        other = Prediction(process, x_t, t, **{kind: ref.get(kind)})
        for k2 in ("x0", "eps"):
            err = float((other.get(k2) - ref.get(k2)).abs().max())
            assert err < atol, f"{kind} -> {k2} round trip error {err:.3g}"


def check_sampler(pipe, reference: torch.Tensor, n: int = 2000, seed: int = 0, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0),
                  max_mmd: float | None = None, sampler=None) -> dict:
    """Sample ``n`` points and return ``{"mmd": ..., "nfe": ...}`` against ``reference``.

    With ``max_mmd`` the check fails (AssertionError naming sampler, NFE and MMD) when the
    unbiased squared MMD exceeds it; pick it from :func:`~diffusekit.testing.mmd_noise_floor`
    (MMD between independent draws of the data) plus a margin. ``sampler`` overrides the
    pipeline's sampler for this call.
    """
    from .metrics import mmd

    x = pipe.sample(n, generator=torch.Generator().manual_seed(seed), sampler=sampler)
    if not torch.isfinite(x).all():
        raise AssertionError(f"sampler {type(pipe.sampler).__name__}: non-finite samples")
    out = {"mmd": mmd(x, reference, bandwidths), "nfe": pipe.last_nfe, "samples": x}
    if max_mmd is not None:
        name = sampler if sampler is not None else pipe.config["sampler"]
        assert out["mmd"] <= max_mmd, f"sampler {name}: MMD^2 {out['mmd']:.5f} > {max_mmd:.5f} at NFE {out['nfe']}"
    return out
