"""VP, sub-VP and VE SDEs (Song et al. 2021, "Score-Based Generative Modeling through SDEs").

beta(t) = b0 + t (b1 - b0); log m(t) = -t^2 (b1 - b0) / 4 - t b0 / 2.

* VP:     dx = -beta x / 2 dt + sqrt(beta) dw;  x_t = m x0 + sqrt(1 - m^2) eps.
* sub-VP: same drift, g^2 = beta (1 - exp(-2 b0 t - (b1 - b0) t^2));  std = 1 - m^2
          (no square root: the variance is (1 - m^2)^2).
* VE:     f = 0, g = sigma(t) sqrt(2 ln(smax/smin)), sigma(t) = smin (smax/smin)^t;
          x_t = x0 + sigma(t) eps, prior N(0, smax^2 I).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.process import AffineGaussian, ForwardProcess, Perturbed, SDE, SigmaParameterized, bcast
from diffusekit.random import rand, randn


class _GaussianSDE(ForwardProcess, AffineGaussian, SDE):
    """Shared behaviour of the score-SDE processes (b(t) = 0, prior at t = 1)."""

    preferred_samplers = ("dpm-solver++", "ode")
    default_parameterization = "eps"
    t_max = 1.0

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return self.config.sampling_eps

    def sample_time(self, n, generator=None, device="cpu"):
        eps = self.config.train_eps
        return eps + (1.0 - eps) * rand((n,), generator, device, torch.float32)

    def perturb(self, x0, t, cond=None, generator=None) -> Perturbed:
        return self.gaussian_perturb(x0, t, cond, generator)

    def prior_std(self) -> float:
        return 1.0

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        return randn((n, *shape), generator, device, dtype) * self.prior_std()

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, s^2 I) summed over all but the batch dimension."""
        s = self.prior_std()
        d = z[0].numel()
        return -0.5 * d * math.log(2 * math.pi * s * s) - z.flatten(1).pow(2).sum(1) / (2 * s * s)

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return self.coefficients(t)[2]


class VPConfig(ComponentConfig):
    beta_min: float = Field(0.1, gt=0, description="beta(0)")
    beta_max: float = Field(20.0, gt=0, description="beta(1)")
    train_eps: float = Field(1e-5, gt=0, lt=1, description="training times t ~ U(train_eps, 1)")
    sampling_eps: float = Field(1e-3, gt=0, lt=1, description="sampling ends at t = sampling_eps")

    @model_validator(mode="after")
    def _order(self):
        if self.beta_max <= self.beta_min:
            raise ValueError(f"beta_max ({self.beta_max}) must exceed beta_min ({self.beta_min})")
        return self


class VP(_GaussianSDE):
    """Variance-preserving SDE (continuous DDPM)."""

    Config = VPConfig

    def beta(self, t):
        c = self.config
        return c.beta_min + t * (c.beta_max - c.beta_min)

    def log_mean_coeff(self, t):
        c = self.config
        return -0.25 * t ** 2 * (c.beta_max - c.beta_min) - 0.5 * t * c.beta_min

    def coefficients(self, t):
        lm = self.log_mean_coeff(t)
        m = torch.exp(lm)
        return m, torch.zeros_like(m), torch.sqrt(-torch.expm1(2 * lm))

    def coefficient_derivatives(self, t):
        m, _, s = self.coefficients(t)
        dm = -0.5 * self.beta(t) * m
        return dm, torch.zeros_like(m), -m * dm / s

    def log_snr(self, t):
        lm = self.log_mean_coeff(t)
        return 2 * lm - torch.log(-torch.expm1(2 * lm))

    def t_from_log_snr(self, lam):
        # m^2 = sigmoid(lam) => -log m = softplus(-lam) / 2; solve A t^2 + B t = C.
        c = self.config
        A, B = 0.25 * (c.beta_max - c.beta_min), 0.5 * c.beta_min
        C = 0.5 * F.softplus(-lam)
        return 2 * C / (B + torch.sqrt(B * B + 4 * A * C))

    def drift(self, x, t, cond=None):
        return -0.5 * bcast(self.beta(t), x) * x

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))


class SubVP(VP):
    """sub-VP SDE: VP drift, g^2 = beta (1 - m^4); std = 1 - m^2 (variance (1 - m^2)^2)."""

    def coefficients(self, t):
        lm = self.log_mean_coeff(t)
        m = torch.exp(lm)
        return m, torch.zeros_like(m), -torch.expm1(2 * lm)

    def coefficient_derivatives(self, t):
        m, _, _ = self.coefficients(t)
        dm = -0.5 * self.beta(t) * m
        return dm, torch.zeros_like(m), -2 * m * dm

    def log_snr(self, t):
        lm = self.log_mean_coeff(t)
        return 2 * lm - 2 * torch.log(-torch.expm1(2 * lm))

    def t_from_log_snr(self, lam):
        return AffineGaussian.t_from_log_snr(self, lam)

    def diffusion(self, t):
        lm = self.log_mean_coeff(t)
        return torch.sqrt(self.beta(t) * -torch.expm1(4 * lm))


class VEConfig(ComponentConfig):
    sigma_min: float = Field(0.01, gt=0, description="sigma(0)")
    sigma_max: float = Field(50.0, gt=0, description="sigma(1); 50 for CIFAR-10, 348 at 256 px")
    train_eps: float = Field(1e-5, gt=0, lt=1)
    sampling_eps: float = Field(1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _order(self):
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max ({self.sigma_max}) must exceed sigma_min ({self.sigma_min})")
        return self


class VE(_GaussianSDE, SigmaParameterized):
    """Variance-exploding SDE (continuous SMLD / NCSN)."""

    Config = VEConfig
    preferred_samplers = ("dpm-solver++", "ode")
    default_parameterization = "eps"

    @property
    def sigma_min(self):  # type: ignore[override]
        return self.config.sigma_min

    @property
    def sigma_max(self):  # type: ignore[override]
        return self.config.sigma_max

    def _log_ratio(self) -> float:
        return math.log(self.config.sigma_max / self.config.sigma_min)

    def sigma(self, t):
        return self.config.sigma_min * torch.exp(t * self._log_ratio())

    def t_of_sigma(self, sigma):
        return torch.log(sigma / self.config.sigma_min) / self._log_ratio()

    def coefficients(self, t):
        s = self.sigma(t)
        return torch.ones_like(s), torch.zeros_like(s), s

    def coefficient_derivatives(self, t):
        s = self.sigma(t)
        return torch.zeros_like(s), torch.zeros_like(s), s * self._log_ratio()

    def log_snr(self, t):
        return -2 * torch.log(self.sigma(t))

    def t_from_log_snr(self, lam):
        return self.t_of_sigma(torch.exp(-0.5 * lam))

    def prior_std(self) -> float:
        return self.config.sigma_max

    def drift(self, x, t, cond=None):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio())


