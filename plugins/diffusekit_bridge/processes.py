"""The (a, b, c) bridge family: diffusion bridges pinned at a condition x1 at t = 1.

Every bridge here is a Gaussian diffusion x_t = alpha_t (x0 + W(rho_t^2)) (f(t) = alpha'/alpha,
g^2 = alpha^2 (rho^2)') conditioned on its value at t = 1 (Doob's h-transform; Zhou et al. 2023,
"Denoising Diffusion Bridge Models", eq. 6 / Table 1; Chen et al. 2023, "Schrodinger Bridges
Beat Diffusion Models on Text-to-Speech Synthesis" (Bridge-TTS), eq. 9; Wang et al. 2024,
"FrameBridge", eq. 4). Writing q_t = rho_t^2 / rho_1^2, the marginal given (x0, x1) is

    x_t = a_t x0 + b_t x1 + c_t eps,
    a_t = alpha_t (1 - q_t),  b_t = (alpha_t / alpha_1) q_t,  c_t = alpha_t rho_t sqrt(1 - q_t).

Boundaries: a -> 1, b, c -> 0 at t -> 0 and b -> 1, a, c -> 0 at t -> 1 (pinned at x1); a + b = 1
when alpha is constant (the VE-type schedules gmax, ve, sb). A schedule only provides alpha_t,
rho_t^2 and rbar_t^2 = rho_1^2 - rho_t^2 (in a form that is exactly 0 at t = 1); everything else
(the coefficients, the posterior used by the samplers, the normalised coefficients a / r, c / r
with r = sqrt(a^2 + c^2) that stay finite at the pinned end) is derived here once.

Schedules (t in [0, 1]):

* ``gmax`` (Bridge-TTS / FrameBridge): alpha = 1, g^2(t) = bmin + t (bmax - bmin),
  rho^2 = (bmax - bmin) t^2 / 2 + bmin t; bmin 0.01, bmax 50.
* ``ve`` (DDBM VE, T = sigma_max): alpha = 1, rho = sigma_max t, so
  x_t = t^2 x1 + (1 - t^2) x0 + sigma_max t sqrt(1 - t^2) eps (DDBM's (t/T)^2 with t -> T t).
* ``vp`` (DDBM VP): alpha_t = exp(-beta_min t / 2 - beta_d t^2 / 4), rho^2 = 1 / alpha^2 - 1
  (the VP diffusion's 1 / SNR); beta_min 0.1, beta_d 2.
* ``sb`` (Schrodinger bridge with a VE schedule, Jukic et al. 2024): alpha = 1, g(t) = sqrt(c) k^t,
  rho^2 = c (k^{2t} - 1) / (2 ln k); k 2.6, c 0.4.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Literal, Optional

import torch
from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.errors import ConfigError, ShapeError
from diffusekit.process import ForwardProcess, Perturbed, PinnedBridge, bcast
from diffusekit.random import rand, randn


# ----------------------------------------------------------------------------- schedules
class BridgeSchedule(ABC):
    """alpha_t, rho_t^2 and rbar_t^2 = rho_1^2 - rho_t^2 of the diffusion the bridge pins."""

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale of the underlying diffusion (1 for VE-type schedules)."""

    @abstractmethod
    def rho2(self, t: torch.Tensor) -> torch.Tensor:
        """rho_t^2 = sigma_t^2 / alpha_t^2 (the diffusion's 1 / SNR); 0 at t = 0."""

    @abstractmethod
    def rbar2(self, t: torch.Tensor) -> torch.Tensor:
        """rho_1^2 - rho_t^2, computed so that it is exactly 0 at t = 1."""

    def rho2_1(self) -> float:
        return float(self.rho2(torch.tensor(1.0, dtype=torch.float64)))

    def alpha_1(self) -> float:
        return float(self.alpha(torch.tensor(1.0, dtype=torch.float64)))


class GMaxSchedule(BridgeSchedule):
    """Bridge-TTS g_max: g^2(t) = bmin + t (bmax - bmin), f = 0."""

    def __init__(self, beta_min: float, beta_max: float):
        self.bmin, self.bmax = beta_min, beta_max

    def alpha(self, t):
        return torch.ones_like(t)

    def rho2(self, t):
        return 0.5 * (self.bmax - self.bmin) * t * t + self.bmin * t

    def rbar2(self, t):
        return (1 - t) * (0.5 * (self.bmax - self.bmin) * (1 + t) + self.bmin)


class VESchedule(BridgeSchedule):
    """DDBM VE: rho = sigma_max t, f = 0."""

    def __init__(self, sigma_max: float):
        self.smax = sigma_max

    def alpha(self, t):
        return torch.ones_like(t)

    def rho2(self, t):
        return (self.smax * t) ** 2

    def rbar2(self, t):
        return self.smax ** 2 * (1 - t) * (1 + t)


class VPSchedule(BridgeSchedule):
    """DDBM VP: log alpha = -beta_min t / 2 - beta_d t^2 / 4, rho^2 = 1 / alpha^2 - 1."""

    def __init__(self, beta_min: float, beta_d: float):
        self.bmin, self.bd = beta_min, beta_d

    def _log_alpha(self, t):
        return -0.5 * self.bmin * t - 0.25 * self.bd * t * t

    def alpha(self, t):
        return torch.exp(self._log_alpha(t))

    def rho2(self, t):
        return torch.expm1(-2 * self._log_alpha(t))

    def rbar2(self, t):
        # e^{-2 la(1)} - e^{-2 la(t)} = e^{-2 la(t)} (e^{-2 (la(1) - la(t))} - 1)
        one = torch.ones_like(t)
        return torch.exp(-2 * self._log_alpha(t)) * torch.expm1(-2 * (self._log_alpha(one) - self._log_alpha(t)))


class SBVESchedule(BridgeSchedule):
    """Schrodinger bridge, VE schedule: g(t) = sqrt(c) k^t, f = 0."""

    def __init__(self, k: float, c: float):
        self.k, self.c = k, c

    def alpha(self, t):
        return torch.ones_like(t)

    def rho2(self, t):
        lk = math.log(self.k)
        return self.c * torch.expm1(2 * t * lk) / (2 * lk)

    def rbar2(self, t):
        lk = math.log(self.k)
        return self.c * torch.exp(2 * t * lk) * torch.expm1(2 * (1 - t) * lk) / (2 * lk)


# ----------------------------------------------------------------------------- the family
class BridgeProcess(ForwardProcess, PinnedBridge):
    """A diffusion bridge pinned at the condition endpoint x1 at t = 1 (see the module docstring).

    Subclasses provide :meth:`schedule` and :meth:`endpoint`; the coefficients, the posterior
    q(x_u | x_s, x0) the samplers use and the normalised coefficients come from here. The
    prior is x1 itself (``prior`` returns the endpoint)."""

    pinned_time = 1.0
    t_max = 1.0
    preferred_samplers = ("bridge-sde", "bridge-ode", "bridge-heun")
    default_parameterization = "eps-psi"
    #: the time grid the bridge samplers use with ``grid="default"`` (``samplers.bridge_grid``):
    #: FrameBridge's t_i = (i + 1) / (N + 1) ending with x0_hat
    default_grid: str = "framebridge"

    @abstractmethod
    def schedule(self) -> BridgeSchedule:
        """The schedule (alpha, rho^2, rbar^2) of this bridge."""

    # -- derived quantities (float64 in, same dtype out) ----------------------------------
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule().alpha(t)

    def rho2(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule().rho2(t)

    def coefficients(self, t):
        s = self.schedule()
        r2, rb2, rho1 = s.rho2(t), s.rbar2(t), s.rho2_1()
        al = s.alpha(t)
        a = al * rb2 / rho1
        b = al / s.alpha_1() * r2 / rho1
        c = al * torch.sqrt((r2 * rb2 / rho1).clamp_min(0))
        return a, b, c

    def normalized_coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a / r, c / r, r) with r = sqrt(a^2 + c^2): a / r = sqrt(1 - q) / sqrt(1 - q + rho^2),
        c / r = rho / sqrt(1 - q + rho^2). Finite at both ends: (1, 0) at t = 0, (0, 1) at t = 1
        (where r = 0; z / r is taken as 0 there, its mean)."""
        s = self.schedule()
        r2, rb2, rho1 = s.rho2(t), s.rbar2(t), s.rho2_1()
        omq = (rb2 / rho1).clamp_min(0)  # 1 - q
        den = torch.sqrt(omq + r2)
        a, _, c = self.coefficients(t)
        return torch.sqrt(omq) / den, torch.sqrt(r2) / den, torch.sqrt(a * a + c * c)

    def reduced(self, x: torch.Tensor, t: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """x~ = (x_t - b x1) / sqrt(a^2 + c^2) = (a x0 + c eps) / r (0 where r = 0): the input of
        a diffusion network at the time whose signal-to-noise ratio is a / c (SAF)."""
        _, b, _ = self.coefficients(t)
        r = self.normalized_coefficients(t)[2]
        real = x.real.dtype  # complex states (speech) keep real coefficients
        z = x - bcast(b.to(real), x) * x1
        r = bcast(r.to(real), x)
        return torch.where(r > 0, z / r.clamp_min(torch.finfo(real).tiny), torch.zeros_like(z))

    def posterior_coefficients(self, s: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_u | x_s, x0) for u < s (the bridge is Markov, so x1 drops out):
        x_u = k_s x_s + k_0 x0 + k_z z with k_s = (alpha_u / alpha_s) rho_u^2 / rho_s^2,
        k_0 = alpha_u (1 - rho_u^2 / rho_s^2), k_z = alpha_u rho_u sqrt(1 - rho_u^2 / rho_s^2)
        (Bridge-TTS eq. 13, DDBM's DDPM-like step). At u = 0 it returns x0 (k_s = k_z = 0)."""
        sch = self.schedule()
        ratio = sch.rho2(u) / sch.rho2(s)
        au, as_ = sch.alpha(u), sch.alpha(s)
        return au / as_ * ratio, au * (1 - ratio), au * torch.sqrt((sch.rho2(u) * (1 - ratio)).clamp_min(0))

    # -- process interface ----------------------------------------------------------------
    def perturb(self, x0, t, cond=None, generator=None) -> Perturbed:
        return self.gaussian_perturb(x0, t, cond, generator)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        """The bridge starts at its endpoint: x_1 = x1 (from ``cond``)."""
        if cond is None:
            raise ConfigError(f"{type(self).__name__} starts at the condition x1: pass cond (the endpoint, "
                              "or the first frame for image-to-video) to sample", loc="cond")
        src = cond.get("x1") if isinstance(cond, dict) else cond
        if torch.is_tensor(src) and src.is_floating_point():
            dtype = src.dtype  # the state takes the condition's precision
        like = torch.zeros((n, *shape), device=device, dtype=dtype)
        return self.endpoint(cond, like).to(device=device).clone()


# ----------------------------------------------------------------------------- `bridge`
_SCHEDULE_PARAMS = {"gmax": ("beta_min", "beta_max"), "vp": ("beta_min", "beta_d"), "ve": ("sigma_max",),
                    "sb": ("k", "c")}
_DEFAULTS = {("gmax", "beta_min"): 0.01, ("gmax", "beta_max"): 50.0, ("vp", "beta_min"): 0.1,
             ("vp", "beta_d"): 2.0, ("ve", "sigma_max"): 80.0, ("sb", "k"): 2.6, ("sb", "c"): 0.4}


class BridgeConfig(ComponentConfig):
    schedule: Literal["gmax", "vp", "ve", "sb"] = Field(
        "gmax", description="gmax (Bridge-TTS / FrameBridge), vp / ve (DDBM), sb (Schrodinger bridge, VE)")
    beta_min: Optional[float] = Field(None, gt=0, description="gmax: g^2(0) (0.01); vp: beta(0) (0.1)")
    beta_max: Optional[float] = Field(None, gt=0, description="gmax: g^2(1) (50)")
    beta_d: Optional[float] = Field(None, gt=0, description="vp: beta(t) = beta_min + beta_d t (2)")
    sigma_max: Optional[float] = Field(None, gt=0, description="ve: rho(t) = sigma_max t (80)")
    k: Optional[float] = Field(None, gt=1, description="sb: g(t) = sqrt(c) k^t (2.6)")
    c: Optional[float] = Field(None, gt=0, description="sb: g(t) = sqrt(c) k^t (0.4)")
    train_eps: float = Field(1e-3, gt=0, lt=0.5, description="training times t ~ U(train_eps, 1 - train_eps)")
    cond_data: Optional[dict] = Field(None, description="dataset spec whose conditions sampling draws from when "
                                      "none is given (diffusekit sample), e.g. {'name': 'moving-digits', 'split': 'test'}")

    @model_validator(mode="after")
    def _params_of_schedule(self):
        own = _SCHEDULE_PARAMS[self.schedule]
        for name in ("beta_min", "beta_max", "beta_d", "sigma_max", "k", "c"):
            if getattr(self, name) is not None and name not in own:
                users = [s for s, ps in _SCHEDULE_PARAMS.items() if name in ps]
                raise ValueError(f"{name} is a parameter of the schedule(s) {users}, not of {self.schedule!r} "
                                 f"(whose parameters are {list(own)})")
        if self.schedule == "gmax" and self.value("beta_max") <= self.value("beta_min"):
            raise ValueError(f"beta_max ({self.value('beta_max')}) must exceed beta_min ({self.value('beta_min')})")
        return self

    def value(self, name: str) -> float:
        v = getattr(self, name)
        return _DEFAULTS[(self.schedule, name)] if v is None else v


def make_schedule(cfg: BridgeConfig) -> BridgeSchedule:
    v = cfg.value
    if cfg.schedule == "gmax":
        return GMaxSchedule(v("beta_min"), v("beta_max"))
    if cfg.schedule == "vp":
        return VPSchedule(v("beta_min"), v("beta_d"))
    if cfg.schedule == "ve":
        return VESchedule(v("sigma_max"))
    return SBVESchedule(v("k"), v("c"))


def frames_endpoint(cond: Any, like: torch.Tensor) -> torch.Tensor:
    """x1 from ``cond``: a tensor shaped like the state; one frame (B, C, H, W) for a video
    state (B, F, C, H, W), replicated along the frames; or a dict holding ``"x1"`` (a neural
    prior's video) next to the network's ``"image"``."""
    if cond is None:
        raise ConfigError("the bridge is pinned at the condition x1: pass cond (a tensor shaped like the state, "
                          "the first frame (B, C, H, W) of a video, or {'image': ..., 'x1': ...})", loc="cond")
    if isinstance(cond, dict):
        if "x1" not in cond:
            raise ConfigError(f"cond is a dict with keys {sorted(cond)}; the bridge endpoint is cond['x1']",
                              loc="cond")
        cond = cond["x1"]
    if not torch.is_tensor(cond):
        raise ConfigError(f"cond must be a tensor or a dict with 'x1', got {type(cond).__name__}", loc="cond")
    if cond.ndim == like.ndim - 1 and like.ndim >= 3 and cond.shape[1:] == like.shape[2:]:
        cond = cond.unsqueeze(1).expand(cond.shape[0], like.shape[1], *cond.shape[1:])
    if cond.shape[1:] != like.shape[1:]:
        raise ShapeError(f"cond: per-sample shape {tuple(cond.shape[1:])} fits neither the state "
                         f"{tuple(like.shape[1:])} nor one of its frames {tuple(like.shape[2:])}")
    if cond.shape[0] != like.shape[0]:
        raise ShapeError(f"cond: {cond.shape[0]} endpoints for a batch of {like.shape[0]}")
    return cond.to(like.dtype)


class Bridge(BridgeProcess):
    """Registered ``bridge``: the family with a chosen schedule on real tensor states."""

    Config = BridgeConfig

    def __init__(self, **params):
        super().__init__(**params)
        self._schedule = make_schedule(self.config)

    def schedule(self) -> BridgeSchedule:
        return self._schedule

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return 0.0

    @property
    def train_t_min(self) -> float:  # type: ignore[override]
        return self.config.train_eps

    def sample_time(self, n, generator=None, device="cpu"):
        e = self.config.train_eps
        return e + (1 - 2 * e) * rand((n,), generator, device, torch.float32)

    def endpoint(self, cond, like):
        return frames_endpoint(cond, like)

    def sample_cond(self, n, generator=None, device="cpu"):
        """Conditions for ``n`` samples drawn (one uniform index per sample, from its own
        generator) from the ``cond_data`` dataset's conditions; None without ``cond_data`` (then
        the prior asks for ``cond``)."""
        if self.config.cond_data is None:
            return None
        bank = self.__dict__.get("_cond_bank")
        if bank is None:
            from diffusekit.train import as_example

            bank = as_example(dict(self.config.cond_data)).cond
            if not torch.is_tensor(bank):
                raise ConfigError(f"cond_data {self.config.cond_data!r} gives conditions of type "
                                  f"{type(bank).__name__}; it must give one tensor condition per example",
                                  loc="cond_data")
            self.__dict__["_cond_bank"] = bank
        idx = (rand((n,), generator, "cpu", torch.float64) * bank.shape[0]).long().clamp_max(bank.shape[0] - 1)
        return bank[idx].to(device)

    def conformance_example(self, n, generator=None):
        """(x0, x1): (n, 3) data and endpoints for the conformance kit."""
        return randn((n, 3), generator), randn((n, 3), generator)


__all__ = ["BridgeSchedule", "GMaxSchedule", "VESchedule", "VPSchedule", "SBVESchedule", "BridgeProcess",
           "Bridge", "BridgeConfig", "frames_endpoint", "make_schedule"]
