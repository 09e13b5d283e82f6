"""Mean-reverting processes of SGMSE+ (OUVE) and the Schroedinger bridge (SBVE).

States are complex spectrograms of shape (B, F, T) (or any shape); ``cond`` carries the
noisy spectrogram y, shape (B, F, T), or a stack (B, K, F, T) whose *last* entry is the
mean-reversion target (StoRM stacks [y, y_hat] and reverts toward the predictive estimate
y_hat). Noise is complex standard normal (variance 1/2 on the real and on the imaginary part).

OUVE (Richter et al. 2023, "Speech Enhancement and Dereverberation with Diffusion-based
Generative Models", eqs. 9-12):

* dx = gamma (y - x) dt + g(t) dw,  g(t) = smin (smax/smin)^t sqrt(2 lam), lam = ln(smax/smin)
* mean  mu_t = e^{-gamma t} x0 + (1 - e^{-gamma t}) y
* var   sigma_t^2 = smin^2 e^{-2 gamma t} (e^{2 (gamma + lam) t} - 1) lam / (gamma + lam)
* prior x_T = y + sigma(1) z (the residual e^{-gamma} (x0 - y) is ignored on purpose).

So OUVE is AdditiveGaussian with a = e^{-gamma t}, b = 1 - a, c = sigma_t.

SBVE (Juki\'c et al. 2024, "Schroedinger bridge for generative speech enhancement"), the bridge
plugin's family with the ``sb`` schedule (the maths lives there once):
f = 0, g(t) = sqrt(c) k^t, sigma_t^2 = c (k^{2t} - 1) / (2 ln k), sbar_t^2 = sigma_1^2 - sigma_t^2;
x_t = (sbar_t^2 x0 + sigma_t^2 y) / sigma_1^2 + (sbar_t sigma_t / sigma_1) z, pinned at x0 (t = 0)
and at y (t = 1); the prior is y itself.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.errors import ConfigError, ShapeError
from diffusekit.process import SDE, EndpointConditioned, ForwardProcess, Perturbed, bcast
from diffusekit.random import rand, randn_like
from diffusekit_bridge.processes import BridgeProcess, SBVESchedule


def mean_reversion_target(cond: Any, like: torch.Tensor, name: str) -> torch.Tensor:
    """y from ``cond``: the tensor itself (B, ...) or the last entry of a stack (B, K, ...)."""
    if cond is None:
        raise ConfigError(
            f"process {name!r} needs the noisy spectrogram y as cond (a complex tensor shaped like "
            "the state); pass cond=Y to loss / sample", loc="cond")
    if not torch.is_tensor(cond):
        raise ConfigError(f"cond must be a tensor, got {type(cond).__name__}", loc="cond")
    if cond.ndim == like.ndim + 1:
        cond = cond[:, -1]
    if cond.shape[1:] != like.shape[1:]:
        raise ShapeError(
            f"cond: per-sample shape {tuple(cond.shape[1:])} does not match the state "
            f"{tuple(like.shape[1:])}; y must be a spectrogram of the same size (or a stack (B, K, ...))")
    return cond


def prior_target(cond: Any, n: int, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """The mean-reversion target for the prior; ``shape`` is the per-sample state shape."""
    if cond is None or not torch.is_tensor(cond):
        raise ConfigError(f"the prior of {name!r} is centred on the noisy spectrogram: pass cond=Y "
                          "(complex, (n, F, T)) to sample", loc="cond")
    y = cond[:, -1] if cond.ndim == len(shape) + 2 else cond
    if y.shape[0] != n:
        raise ShapeError(f"prior: n={n} but cond holds {y.shape[0]} spectrograms")
    return y


class ConditionalEndpoint(ForwardProcess, EndpointConditioned):
    """Processes whose endpoint / prior is the noisy spectrogram y taken from ``cond``.

    Shared pieces: training times U(train_eps, 1), affine perturbation, endpoint; samplers and
    parameterizations that only make sense with a noisy condition require this capability."""

    t_max = 1.0
    registry_name = "?"

    @property
    def t_min(self) -> float:  # type: ignore[override]
        """Sampling ends at the config's t_eps."""
        return self.config.t_eps

    def sample_time(self, n, generator=None, device="cpu"):
        lo = self.config.train_eps
        return lo + (1.0 - lo) * rand((n,), generator, device, torch.float32)

    def endpoint(self, cond, like):
        return mean_reversion_target(cond, like, self.registry_name)

    def perturb(self, x0, t, cond=None, generator=None) -> Perturbed:
        return self.gaussian_perturb(x0, t, cond, generator)

    def check_state(self, x, shape=None, loc="x"):
        if not torch.is_tensor(x):
            raise ShapeError(f"{loc}: expected a complex spectrogram tensor, got {type(x).__name__}")
        # spectrogram lengths vary between utterances: only the frequency axis is fixed
        if shape is not None and x.ndim >= 2 and x.shape[1] != shape[0]:
            raise ShapeError(f"{loc}: {x.shape[1]} frequency bins, the pipeline expects {shape[0]}")

    def conformance_example(self, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, y) complex spectrogram-like probes for ``diffusekit check`` (shape (n, 4, 8))."""
        like = torch.zeros(n, 4, 8, dtype=torch.complex64)
        return randn_like(like, generator), randn_like(like, generator)

    def marginal(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of x_t given x0 and y."""
        a, b, c = self.coefficients(t)
        return bcast(a, x0) * x0 + bcast(b, x0) * y, c


class OUVEConfig(ComponentConfig):
    theta: float = Field(1.5, gt=0, description="stiffness gamma of the mean reversion toward y")
    sigma_min: float = Field(0.05, gt=0, description="diffusion scale at t = 0")
    sigma_max: float = Field(0.5, gt=0, description="diffusion scale at t = 1")
    t_eps: float = Field(0.03, gt=0, lt=1, description="sampling ends at t = t_eps")
    train_eps: float = Field(0.03, gt=0, lt=1, description="training times t ~ U(train_eps, 1)")

    @model_validator(mode="after")
    def _order(self):
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min})")
        return self


class OUVE(ConditionalEndpoint, SDE):
    """Ornstein-Uhlenbeck process with variance-exploding diffusion (SGMSE+)."""

    Config = OUVEConfig
    registry_name = "ouve"
    preferred_samplers = ("sgmse-pc", "ode")
    default_parameterization = "sgmse-score"

    @property
    def lam(self) -> float:
        return math.log(self.config.sigma_max / self.config.sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Marginal std sigma_t (closed form, see module docstring)."""
        c = self.config
        g, lam = c.theta, self.lam
        var = (c.sigma_min ** 2 * torch.exp(-2 * g * t) * torch.expm1(2 * (g + lam) * t) * lam / (g + lam))
        return torch.sqrt(var)

    def coefficients(self, t):
        a = torch.exp(-self.config.theta * t)
        return a, 1 - a, self.sigma(t)

    def coefficient_derivatives(self, t):
        a, _, s = self.coefficients(t)
        g2 = self.diffusion(t) ** 2
        da = -self.config.theta * a
        # d(sigma^2)/dt = -2 gamma sigma^2 + g^2
        ds = (g2 - 2 * self.config.theta * s * s) / (2 * s)
        return da, -da, ds

    def drift(self, x, t, cond=None):
        return bcast(self.config.theta, x) * (self.endpoint(cond, x) - x)

    def diffusion(self, t):
        c = self.config
        return c.sigma_min * torch.exp(t * self.lam) * math.sqrt(2 * self.lam)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.complex64):
        """y + sigma(1) z with complex z; the shape is taken from y (utterance lengths vary)."""
        y = prior_target(cond, n, shape, self.registry_name)
        s1 = self.sigma(torch.tensor(1.0, dtype=torch.float64)).item()
        return y + s1 * randn_like(y, generator)


class SBConfig(ComponentConfig):
    k: float = Field(2.6, gt=1, description="g(t) = sqrt(c) k^t")
    c: float = Field(0.4, gt=0, description="g(t) = sqrt(c) k^t")
    t_eps: float = Field(1e-4, gt=0, lt=1, description="sampling ends at t = t_eps")
    train_eps: float = Field(1e-4, gt=0, lt=1, description="training times t ~ U(train_eps, 1)")


class SchroedingerBridge(ConditionalEndpoint, BridgeProcess):
    """Schroedinger bridge with a VE schedule (SBVE) between clean x0 and noisy y: an instance of
    the bridge family of the bridge plugin (``diffusekit_bridge.processes``, schedule ``sb``),
    which holds the maths (coefficients, posterior, normalised coefficients) once.

    Pinned at both ends: c(0) = c(1) = 0 and x_1 = y exactly (``PinnedBridge``), so generic
    Gaussian solvers are refused and sampling starts from y with ``sb-ode`` / ``sb-sde`` (the
    bridge plugin's samplers with this process's reference grid linspace(1, t_eps, N + 1))."""

    Config = SBConfig
    registry_name = "sb"
    preferred_samplers = ("sb-ode", "sb-sde")
    default_parameterization = "sgmse-x0"
    #: the speech reference's grid linspace(1, t_eps, N + 1) for the bridge samplers
    default_grid = "process"

    def __init__(self, **params):
        super().__init__(**params)
        self._schedule = SBVESchedule(self.config.k, self.config.c)

    def schedule(self) -> SBVESchedule:
        return self._schedule

    def sigma2(self, t: torch.Tensor) -> torch.Tensor:
        """sigma_t^2 = c (k^{2t} - 1) / (2 ln k) (the schedule's rho_t^2)."""
        return self._schedule.rho2(t)

    def sbar2(self, t: torch.Tensor) -> torch.Tensor:
        """sigma_1^2 - sigma_t^2, exactly 0 at t = 1."""
        return self._schedule.rbar2(t)

    def sigma_T2(self) -> float:
        return self._schedule.rho2_1()

    def coefficient_derivatives(self, t):
        s2, sb2, sT2 = self.sigma2(t), self.sbar2(t), self.sigma_T2()
        g2 = self.config.c * torch.exp(2 * t * math.log(self.config.k))  # g(t)^2 = d sigma_t^2 / dt
        dc = g2 * (sb2 - s2) / (2 * torch.sqrt(s2 * sb2 * sT2))
        return -g2 / sT2, g2 / sT2, dc

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.complex64):
        """The bridge starts at the noisy spectrogram itself: x_1 = y."""
        return prior_target(cond, n, shape, self.registry_name).clone()
