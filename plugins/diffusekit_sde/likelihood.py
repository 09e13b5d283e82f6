"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, appendix D.2,
likelihood.py; Chen et al. 2018 instantaneous change of variables).

Integrate the augmented ODE from t_min (the sampling end, 1e-3 for VP) to T = 1:

    d/dt [x, delta] = [v(x, t), div_x v(x, t)],  v = f - g^2 score / 2,

then log p_{t_min}(x) = log p_T(x(T)) + delta(T). The divergence is exact (D vector-Jacobian
products, for small D) or the Hutchinson-Skilling estimate eps^T (dv/dx) eps with one fixed
Rademacher or Gaussian probe per datapoint for the whole trajectory (``n_probes`` > 1
averages independent probes). RK45 (dopri5, torchdiffeq) with rtol = atol = 1e-5 by default.

Discrete data: with ``dequantize=L`` the data are L levels on [lo, hi] spaced
Delta = (hi - lo) / (L - 1); x + U(-Delta/2, Delta/2) is evaluated and D log Delta is added,
a lower bound on log P(x) (uniform dequantisation). ``bits_per_dim`` returns
-log P / (D ln 2) (for 256 levels on [-1, 1] this is the paper's offset of about 7 bits).
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig, validate_params
from diffusekit.errors import ShapeError
from diffusekit.random import GeneratorLike, rand_like, randn_like

from .ode import pf_ode_velocity


class LikelihoodConfig(ComponentConfig):
    estimator: Literal["hutchinson", "exact"] = Field(
        "hutchinson", description="divergence: Hutchinson-Skilling estimate or exact trace (D backward passes)")
    probe: Literal["rademacher", "gaussian"] = Field("rademacher", description="Hutchinson probe distribution")
    n_probes: int = Field(1, ge=1, le=1024, description="independent probes averaged per datapoint")
    method: Literal["rk45", "euler", "heun", "rk4"] = Field("rk45", description="ODE solver")
    steps: int = Field(100, ge=1, description="fixed-step solvers: number of uniform steps")
    rtol: float = Field(1e-5, gt=0)
    atol: float = Field(1e-5, gt=0)
    t_start: Optional[float] = Field(None, gt=0, lt=1, description="start time (default: the process's t_min)")
    dequantize: Optional[int] = Field(None, ge=2, description="number of discrete levels of the data (None: continuous)")
    data_range: tuple[float, float] = Field((-1.0, 1.0), description="(lo, hi) of the discrete levels")
    bits_per_dim: bool = Field(False, description="return bits per dimension instead of nats per sample")
    max_exact_dim: int = Field(4096, ge=1, description="refuse the exact trace above this dimension")

    @model_validator(mode="after")
    def _range(self):
        lo, hi = self.data_range
        if not hi > lo:
            raise ValueError(f"data_range {self.data_range} must satisfy hi > lo")
        return self


_METHODS = {"rk45": "dopri5", "euler": "euler", "heun": "heun2", "rk4": "rk4"}


def _probes(x: torch.Tensor, how: str, generator: GeneratorLike) -> torch.Tensor:
    z = randn_like(x, generator)
    return torch.sign(z) if how == "rademacher" else z


def divergence(fn, x: torch.Tensor, estimator: str, probe: Optional[torch.Tensor] = None):
    """(v, div v) at x for ``v = fn(x)``: exact trace or eps^T J eps with the given probe."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = fn(x)
        if estimator == "exact":
            flat_v = v.flatten(1)
            d = flat_v.shape[1]
            div = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
            for j in range(d):
                (g,) = torch.autograd.grad(flat_v[:, j].sum(), x, retain_graph=j < d - 1)
                div = div + g.flatten(1)[:, j]
        else:
            (g,) = torch.autograd.grad((v * probe).sum(), x)
            div = (g * probe).flatten(1).sum(1)
    return v.detach(), div.detach()


def log_likelihood(process, denoiser, x: torch.Tensor, cond=None, generator: GeneratorLike = None,
                   **options) -> torch.Tensor:
    """Per-sample log p(x) in nats (or bits/dim), see the module docstring for ``options``."""
    cfg: LikelihoodConfig = validate_params(LikelihoodConfig, options, loc="log_likelihood")  # type: ignore[assignment]
    if not torch.is_tensor(x) or x.ndim < 2:
        raise ShapeError(f"log_likelihood: x must be a Tensor of shape (B, ...), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if cfg.estimator == "exact" and x[0].numel() > cfg.max_exact_dim:
        raise ShapeError(f"log_likelihood: exact trace needs {x[0].numel()} backward passes per step; use "
                         f"estimator='hutchinson' or raise max_exact_dim (now {cfg.max_exact_dim})")
    work = x.dtype
    d = x[0].numel()
    offset = 0.0
    if cfg.dequantize is not None:
        lo, hi = cfg.data_range
        delta = (hi - lo) / (cfg.dequantize - 1)
        x = x + (rand_like(x, generator) - 0.5) * delta
        offset = d * math.log(delta)
    if cfg.n_probes > 1:
        x = x.repeat_interleave(cfg.n_probes, 0)
        if cond is not None and torch.is_tensor(cond):
            cond = cond.repeat_interleave(cfg.n_probes, 0)
    n = x.shape[0]
    probe = _probes(x, cfg.probe, generator) if cfg.estimator == "hutchinson" else None
    t0 = float(process.t_min if cfg.t_start is None else cfg.t_start)
    t1 = float(process.t_max)

    def velocity(t_scalar, y):
        tt = t_scalar.clamp(t0, t1).to(work).expand(n)
        return pf_ode_velocity(denoiser, process, y, tt, cond)[0]

    def f(t, state):
        y, _ = state
        v, div = divergence(lambda z: velocity(t, z), y.to(work), cfg.estimator,
                            None if probe is None else probe.to(work))
        return v.to(torch.float64), div.to(torch.float64)

    from torchdiffeq import odeint

    ts = torch.tensor([t0, t1], dtype=torch.float64, device=x.device)
    state0 = (x.to(torch.float64), torch.zeros(n, dtype=torch.float64, device=x.device))
    kw = {"rtol": cfg.rtol, "atol": cfg.atol} if cfg.method == "rk45" else {
        "options": {"step_size": (t1 - t0) / cfg.steps}}
    with torch.no_grad():
        xs, deltas = odeint(f, state0, ts, method=_METHODS[cfg.method], **kw)
    z, delta = xs[-1], deltas[-1]
    logp = process.prior_logp(z) + delta + offset
    if cfg.n_probes > 1:
        logp = logp.reshape(-1, cfg.n_probes).mean(1)
    if cfg.bits_per_dim:
        return -logp / (d * math.log(2))
    return logp
