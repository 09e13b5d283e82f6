"""PFGM++ (finite augmented dimension D) and EDM (its D -> inf limit) as sigma-time processes.

Time *is* the noise level: sigma(t) = t, t in [sigma_min, sigma_max] (defaults 0.002 and 80,
Karras et al. 2022). With the alignment r = sigma sqrt(D) (Xu et al. 2023) the sampling
ODE of both processes is the EDM probability-flow ODE with s(t) = 1, sigma(t) = t,
dx/dsigma = (x - D(x, sigma)) / sigma, where D(x, sigma) = E[y | x] under the process's own
kernel. Only the kernel and the prior differ:

* ``pfgmpp``: x = y + n, n = R u, R = sigma sqrt(D) sqrt(Z/(1-Z)), Z ~ Beta(N/2, D/2) (heavy
  tailed, see :mod:`.kernel`); prior = the same kernel at sigma_max around 0. It is *not*
  AdditiveGaussian (n is not Gaussian), so it offers DenoisingODE only (deterministic solvers) and predictions
  cannot be turned into Gaussian scores.
* ``edm``: x = y + sigma eps, eps ~ N(0, I); AdditiveGaussian with (a, b, c) = (1, 0, sigma) and
  prior N(0, sigma_max^2 I).

Training noise levels are log-normal, ln sigma ~ N(p_mean, p_std^2) (EDM Table 1: -1.2, 1.2).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from pydantic import Field, field_validator, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.process import AdditiveGaussian, DenoisingODE, ForwardProcess, Perturbed, PriorDensity, bcast
from diffusekit.random import randn

from .kernel import kernel_log_prob, sample_perturbation


class SigmaConfig(ComponentConfig):
    sigma_min: float = Field(0.002, gt=0, description="smallest noise level (sampling end, EDM: 0.002)")
    sigma_max: float = Field(80.0, gt=0, description="largest noise level (prior, EDM: 80)")
    p_mean: float = Field(-1.2, description="training noise levels: ln sigma ~ N(p_mean, p_std^2)")
    p_std: float = Field(1.2, gt=0, description="training noise levels: ln sigma ~ N(p_mean, p_std^2)")

    @model_validator(mode="after")
    def _order(self):
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min}); "
                             "e.g. sigma_min=0.002, sigma_max=80")
        return self


class PFGMPPConfig(SigmaConfig):
    D: float = Field(128.0, gt=0, description="augmented dimension D (finite; D = inf is process 'edm')")

    @field_validator("D")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("D must be finite; for the D -> inf limit use process 'edm'")
        return v


class _SigmaTime(ForwardProcess, DenoisingODE, PriorDensity):
    """Shared sigma-as-time behaviour: t = sigma, log-normal training times."""

    Config = SigmaConfig
    preferred_samplers = ("heun", "euler")
    default_parameterization = "edm"
    #: augmented dimension (inf for EDM)
    D: float = math.inf

    @property
    def sigma_min(self) -> float:  # type: ignore[override]
        return self.config.sigma_min

    @property
    def sigma_max(self) -> float:  # type: ignore[override]
        return self.config.sigma_max

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return self.config.sigma_min

    @property
    def t_max(self) -> float:  # type: ignore[override]
        return self.config.sigma_max

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma

    def sample_time(self, n: int, generator=None, device="cpu") -> torch.Tensor:
        """sigma = exp(p_mean + p_std z), z ~ N(0, 1) (EDM's log-normal training distribution)."""
        z = randn((n,), generator, device, torch.float32)
        return torch.exp(self.config.p_mean + self.config.p_std * z)

    @abstractmethod
    def noise(self, shape: tuple[int, ...], sigma: torch.Tensor, generator=None, device="cpu") -> torch.Tensor:
        """A float64 draw of the perturbation x - y at noise level ``sigma`` (scalar or (B,))."""

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, cond: Any = None, generator=None) -> Perturbed:
        """x_t = x0 + n with n drawn from the kernel at sigma = t; ``noise`` is n / sigma."""
        n = self.noise(tuple(x0.shape), t, generator, x0.device).to(x0.dtype)
        return Perturbed(x_t=x0 + n, t=t, noise=n / bcast(t, x0), x0=x0)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        """The kernel at sigma_max around 0, drawn in float64 and cast to ``dtype``."""
        sig = torch.tensor(self.config.sigma_max, dtype=torch.float64)
        return self.noise((n, *shape), sig, generator, device).to(dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log density of the prior (float64), summed over all but the batch dimension."""
        return kernel_log_prob(z, self.config.sigma_max, self.D)


class PFGMPP(_SigmaTime):
    """PFGM++ with augmented dimension D: heavy-tailed kernel, EDM ODE, PFGM++ prior."""

    Config = PFGMPPConfig

    @property
    def D(self) -> float:  # type: ignore[override]
        return float(self.config.D)

    def noise(self, shape, sigma, generator=None, device="cpu"):
        return sample_perturbation(shape, sigma, self.D, generator, device)


class EDM(_SigmaTime, AdditiveGaussian):
    """EDM (Karras et al. 2022) = PFGM++ with D -> inf: x = y + sigma eps, prior N(0, smax^2 I)."""

    def noise(self, shape, sigma, generator=None, device="cpu"):
        sig = torch.as_tensor(sigma, dtype=torch.float64, device=device)
        eps = randn(shape, generator, device, torch.float64)
        return bcast(sig, eps) * eps

    def coefficients(self, t):
        return torch.ones_like(t), torch.zeros_like(t), t

    def coefficient_derivatives(self, t):
        return torch.zeros_like(t), torch.zeros_like(t), torch.ones_like(t)

    def log_snr(self, t):
        return -2 * torch.log(t)

    def t_from_log_snr(self, lam):
        return torch.exp(-0.5 * lam)
