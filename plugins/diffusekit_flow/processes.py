"""Flow-matching processes: ``rectified-flow`` (the linear path) and ``interpolant`` (cosine,
VP or linear path), both x_t = a(t) x0 + c(t) eps with data at t = 0 and noise at t = 1.

Capabilities: :class:`Interpolant` (an AdditiveGaussian path whose data end t = 0 has a = 1,
c = 0), :class:`~diffusekit.process.SDE` (the forward SDE with the same marginals),
:class:`~diffusekit.process.Likelihood` (probability-flow ODE) and
:class:`~diffusekit.process.PriorDensity` (N(0, I)).

**Endpoints.** c(0) = 0 and (linear, cosine) a(1) = 0, so log-SNR is +inf at t = 0 and -inf at
t = 1, eps = (x - a x0) / c is undefined at t = 0 and x0 = (x - c eps) / a at t = 1. The
process's working range [t_min, t_max] (default [1e-3, 0.999]) keeps every conversion and every
log-SNR grid finite; that is the range the project's Gaussian solvers integrate over and the
range training draws t from. The flow samplers (:mod:`.samplers`) start at t_max and land
exactly on the data end t = 0 with their last step, which never evaluates the network there.

**Matching SDE** [derived]: for x_t = a x0 + c eps the linear SDE dx = f(t) x dt + g(t) dw with
f = a'/a and g^2 = (c^2)' - 2 f c^2 = 2 c (a c' - c a') / a has the same marginals (mean a x0,
variance c^2 solve dm/dt = f m, dv/dt = 2 f v + g^2). Linear path: f = -1/(1 - t),
g^2 = 2 t / (1 - t); VP path: f = -beta/2, g^2 = beta (the score SDE itself).

**Training times** (``time_sampling``), mapped affinely onto [t_min, t_max]:

* ``uniform``: t ~ U(0, 1);
* ``logit-normal`` (Esser et al. 2024, eq. 19): t = sigmoid(n), n ~ N(loc, scale^2);
* ``mode`` (Esser et al. 2024, eq. 20): t = 1 - u - s (cos^2(pi u / 2) - 1 + u), u ~ U(0, 1),
  s = ``mode_scale`` in [-1, 2 / (pi - 2)] (the map is monotone there).
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.process import SDE, AdditiveGaussian, ForwardProcess, Likelihood, Perturbed, PriorDensity, bcast
from diffusekit.random import rand, randn

from .paths import Path, make_path

_MODE_MAX = 2 / (math.pi - 2)


class Interpolant(AdditiveGaussian):
    """Capability: an AdditiveGaussian path x_t = a x0 + c eps (b = 0) on [0, 1] whose data end
    is reached exactly: a(t_data) = 1, c(t_data) = 0 with ``t_data = 0``.

    Samplers that integrate the velocity u = a' x0 + c' eps may end their grid at ``t_data``
    (the last step lands there without evaluating the network there); the Gaussian solvers keep
    to [t_min, t_max], where log-SNR is finite.
    """

    #: the time at which x_t is the data itself (c = 0)
    t_data: float = 0.0


class FlowConfig(ComponentConfig):
    t_min: float = Field(1e-3, gt=0.0, lt=0.5,
                         description="working range start: Gaussian solvers end here, training draws t >= t_min")
    t_max: Optional[float] = Field(
        None, gt=0.5, le=1.0,
        description="working range end (default 0.999 for paths with a(1) = 0, else 1): samplers start here")
    time_sampling: Literal["uniform", "logit-normal", "mode"] = Field(
        "uniform", description="training time density (Esser et al. 2024: logit-normal or mode)")
    loc: float = Field(0.0, description="logit-normal: mean of the normal before the sigmoid")
    scale: float = Field(1.0, gt=0.0, description="logit-normal: std of the normal before the sigmoid")
    mode_scale: float = Field(1.29, ge=-1.0, le=_MODE_MAX,
                              description="mode sampling: s in [-1, 2/(pi-2)] (0 = uniform)")


class _FlowProcess(ForwardProcess, Interpolant, SDE, Likelihood, PriorDensity):
    """Shared behaviour of the flow processes; subclasses set ``self.path``."""

    Config = FlowConfig
    default_parameterization = "velocity"
    preferred_samplers = ("flow-midpoint", "flow-heun", "flow-euler")
    path: Path

    def _check_range(self) -> None:
        from diffusekit.errors import ConfigError

        if self.path.reaches_noise and self.t_max >= 1.0:
            raise ConfigError(
                f"t_max = {self.t_max}: this path has a(1) = 0, where x0 = (x - c eps) / a and the log-SNR "
                "are undefined; choose t_max < 1 (default 0.999). The flow samplers still start from pure "
                "noise N(0, I)", loc="process.t_max")
        if not self.t_max > self.t_min:
            raise ConfigError(f"t_max = {self.t_max} must exceed t_min = {self.t_min}", loc="process.t_max")

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return float(self.config.t_min)

    @property
    def t_max(self) -> float:  # type: ignore[override]
        t = self.config.t_max
        if t is None:
            return 1.0 - 1e-3 if self.path.reaches_noise else 1.0
        return float(t)

    # -- AdditiveGaussian -------------------------------------------------------------------
    def coefficients(self, t):
        a, c = self.path.coefficients(t)
        return a, torch.zeros_like(a), c

    def coefficient_derivatives(self, t):
        da, dc = self.path.derivatives(t)
        return da, torch.zeros_like(da), dc

    def log_snr(self, t):
        return 2 * self.path.half_log_snr(t)

    def t_from_log_snr(self, lam):
        return self.path.t_of_half_log_snr(0.5 * lam)

    # -- training ---------------------------------------------------------------------------
    def sample_time(self, n, generator=None, device="cpu"):
        cfg = self.config
        if cfg.time_sampling == "uniform":
            s = rand((n,), generator, device, torch.float32)
        elif cfg.time_sampling == "logit-normal":
            s = torch.sigmoid(cfg.loc + cfg.scale * randn((n,), generator, device, torch.float32))
        else:
            u = rand((n,), generator, device, torch.float32)
            s = 1 - u - cfg.mode_scale * (torch.cos(0.5 * math.pi * u) ** 2 - 1 + u)
        return self.t_min + (self.t_max - self.t_min) * s

    def time_density(self, t: torch.Tensor) -> torch.Tensor:
        """Density of the training times at t (float64; for tests and plots)."""
        cfg = self.config
        t = t.to(torch.float64)
        span = self.t_max - self.t_min
        s = ((t - self.t_min) / span).clamp(1e-12, 1 - 1e-12)
        if cfg.time_sampling == "uniform":
            return torch.full_like(s, 1 / span)
        if cfg.time_sampling == "logit-normal":
            logit = torch.log(s) - torch.log1p(-s)
            dens = torch.exp(-0.5 * ((logit - cfg.loc) / cfg.scale) ** 2) / (cfg.scale * math.sqrt(2 * math.pi))
            return dens / (s * (1 - s)) / span
        # mode: invert f(u) = s by bisection (f decreasing on [0, 1]); density 1 / |f'(u)|
        lo, hi = torch.zeros_like(s), torch.ones_like(s)
        k = cfg.mode_scale

        def f(u):
            return 1 - u - k * (torch.cos(0.5 * math.pi * u) ** 2 - 1 + u)

        for _ in range(80):
            mid = (lo + hi) / 2
            above = f(mid) > s
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        u = (lo + hi) / 2
        df = -1 - k * (-0.5 * math.pi * torch.sin(math.pi * u) + 1)
        return 1 / df.abs() / span

    def perturb(self, x0, t, cond=None, generator=None) -> Perturbed:
        return self.gaussian_perturb(x0, t, cond, generator)

    # -- prior ------------------------------------------------------------------------------
    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        return randn((n, *shape), generator, device, dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        d = z[0].numel()
        return -0.5 * d * math.log(2 * math.pi) - 0.5 * z.flatten(1).pow(2).sum(1)

    # -- SDE with the same marginals ----------------------------------------------------------
    def drift(self, x, t, cond=None):
        a, _, _ = self.coefficients(t)
        da, _, _ = self.coefficient_derivatives(t)
        return bcast(da / a, x) * x

    def diffusion(self, t):
        a, _, c = self.coefficients(t)
        da, _, dc = self.coefficient_derivatives(t)
        return torch.sqrt((2 * c * (a * dc - c * da) / a).clamp_min(0.0))

    # -- likelihood -------------------------------------------------------------------------
    def log_likelihood(self, denoiser, x, cond=None, generator=None, **options):
        """Per-sample log p(x) (nats, or bits/dim) through the probability-flow ODE
        dx/dt = u(x, t) from t_min to t_max with the N(0, I) prior there; the score-SDE plugin's
        implementation (exact trace or Hutchinson; options in
        :class:`diffusekit_sde.likelihood.LikelihoodConfig`)."""
        from diffusekit_sde.likelihood import log_likelihood

        return log_likelihood(self, denoiser, x, cond, generator=generator, **options)

    # -- conformance --------------------------------------------------------------------------
    def conformance_network(self, parameterization):
        if parameterization.output == "velocity":
            return StandardNormalVelocity(self)
        return super().conformance_network(parameterization)


class StandardNormalVelocity(torch.nn.Module):
    """Exact velocity for x0 ~ N(0, I) on a path with b = 0: E[x0 | x_t] = a x / r2,
    E[eps | x_t] = c x / r2 (r2 = a^2 + c^2), so u = (a a' + c c') x / r2."""

    def __init__(self, process) -> None:
        super().__init__()
        self.process = process

    def forward(self, x, t, cond=None):
        dt = x.real.dtype if x.is_complex() else x.dtype
        a, _, c = (bcast(v.to(dt), x) for v in self.process.coefficients(t))
        da, _, dc = (bcast(v.to(dt), x) for v in self.process.coefficient_derivatives(t))
        return (a * da + c * dc) * x / (a * a + c * c)


class RectifiedFlow(_FlowProcess):
    """Rectified flow / conditional-OT path x_t = (1 - t) x0 + t eps (Liu et al. 2022)."""

    def __init__(self, **params):
        super().__init__(**params)
        self.path = make_path("linear")
        self._check_range()


class InterpolantConfig(FlowConfig):
    path: Literal["cosine", "vp", "linear"] = Field(
        "cosine", description="a, c: cosine (cos, sin of pi t / 2), vp (the VP SDE's path) or linear")
    beta_min: float = Field(0.1, gt=0, description="vp path: beta(0)")
    beta_max: float = Field(20.0, gt=0, description="vp path: beta(1)")

    @model_validator(mode="after")
    def _order(self):
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max ({self.beta_max}) must exceed beta_min ({self.beta_min})")
        return self


class InterpolantProcess(_FlowProcess):
    """General interpolant x_t = a(t) x0 + c(t) eps: ``path`` cosine, vp or linear."""

    Config = InterpolantConfig

    def __init__(self, **params):
        super().__init__(**params)
        cfg = self.config
        self.path = make_path(cfg.path, cfg.beta_min, cfg.beta_max)
        self._check_range()
