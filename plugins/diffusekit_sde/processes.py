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
from diffusekit.process import (SDE, AdditiveGaussian, DenoisingODE, ForwardProcess, Likelihood, Perturbed,
                                PriorDensity, bcast)
from diffusekit.random import rand, randn


class _GaussianSDE(ForwardProcess, AdditiveGaussian, SDE, Likelihood, PriorDensity):
    """Shared behaviour of the score-SDE processes (b(t) = 0, prior at t = 1)."""

    preferred_samplers = ("deis", "dpm-solver++", "ode")
    default_parameterization = "eps"
    t_max = 1.0
    #: noise of the ancestral sampler: "transition" (DDPM, sqrt(beta_i)) or "posterior" (SMLD)
    ancestral_variance = "transition"

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return self.config.sampling_eps

    @property
    def train_t_min(self) -> float:  # type: ignore[override]
        return self.config.train_eps

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

    def log_likelihood(self, denoiser, x, cond=None, generator=None, **options):
        """Per-sample log p(x) (nats, or bits/dim) through the probability-flow ODE; options in
        :class:`diffusekit_sde.likelihood.LikelihoodConfig` (estimator, probe, dequantize, ...)."""
        from .likelihood import log_likelihood

        return log_likelihood(self, denoiser, x, cond, generator=generator, **options)


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
        return AdditiveGaussian.t_from_log_snr(self, lam)

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


class VE(_GaussianSDE, DenoisingODE):
    """Variance-exploding SDE (continuous SMLD / NCSN)."""

    Config = VEConfig
    preferred_samplers = ("deis", "dpm-solver++", "ode")
    default_parameterization = "eps"
    ancestral_variance = "posterior"

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




class _GridTime:
    """Discrete-level processes: levels i = 0..N-1 sit at t_i = i / (N - 1); training draws the
    level uniformly (the paper's integer labels) and sampling ends at level 0 (t = 0)."""

    @property
    def t_min(self) -> float:
        return 0.0

    def sample_time(self, n, generator=None, device="cpu"):
        big = self.config.num_scales - 1
        i = torch.floor(rand((n,), generator, device, torch.float64) * (big + 1)).clamp_max(big)
        return (i / big).to(torch.float32)


class DDPMConfig(VPConfig):
    num_scales: int = Field(1000, ge=2, le=100_000, description="N, number of discrete noise levels")


class DDPM(_GridTime, VP):
    """Discrete DDPM form of the VP SDE (Ho et al. 2020; Song et al. 2021, eq. 4 / sde_lib.py):
    beta_i = linspace(b_min / N, b_max / N, N), a_i = prod_{j <= i} sqrt(1 - beta_j), c_i =
    sqrt(1 - a_i^2) at the grid times t_i = i / (N - 1), i = 0..N-1 (data at t_{-1} = -1/(N-1)).

    Between grid times log a(t) is linear in t, so the process is also a VP SDE with the
    piecewise-constant beta_eff = -2 d log a / dt = -(N - 1) ln(1 - beta_i) ~ beta(t), and the
    exact one-step transition between grid times is the DDPM step x_i = sqrt(1 - beta_i)
    x_{i-1} + sqrt(beta_i) z. Training draws t on the grid (the paper's discrete labels i);
    sampling ends at t = 0 (level i = 0, c = sqrt(beta_0)).
    """

    Config = DDPMConfig

    def _table(self) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.__dict__.get("_tab")
        if cache is None:
            c = self.config
            n = c.num_scales
            betas = torch.linspace(c.beta_min / n, c.beta_max / n, n, dtype=torch.float64)
            log_a = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.cumsum(torch.log1p(-betas), 0)])
            cache = self.__dict__["_tab"] = (betas, log_a)
        return cache

    @property
    def discrete_betas(self) -> torch.Tensor:
        return self._table()[0]


    def _segment(self, t: torch.Tensor):
        n = self.config.num_scales
        _, log_a = self._table()
        log_a = log_a.to(device=t.device, dtype=torch.float64)
        u = (t.to(torch.float64) * (n - 1)) + 1.0  # grid index j = i + 1, j = 0 is the data
        j = torch.floor(u).clamp(0, n - 1).long()
        slope = log_a[j + 1] - log_a[j]  # per unit of u
        return log_a[j], slope, u - j

    def log_mean_coeff(self, t):
        base, slope, frac = self._segment(t)
        return (base + slope * frac).to(t.dtype)

    def beta(self, t):
        _, slope, _ = self._segment(t)
        return (-2 * slope * (self.config.num_scales - 1)).to(t.dtype)

    def t_from_log_snr(self, lam):
        return AdditiveGaussian.t_from_log_snr(self, lam)


class SMLDConfig(VEConfig):
    num_scales: int = Field(1000, ge=2, le=100_000, description="N, number of discrete noise levels")


class SMLD(_GridTime, VE):
    """Discrete SMLD / NCSN form of the VE SDE: sigma_i = exp(linspace(ln s_min, ln s_max, N)) at
    t_i = i / (N - 1), which equals the continuous sigma(t) at the grid times; the one-step
    transition is x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z. Training draws t on the grid;
    sampling ends at t = 0 (sigma_min)."""

    Config = SMLDConfig

    @property
    def discrete_sigmas(self) -> torch.Tensor:
        c = self.config
        return torch.exp(torch.linspace(math.log(c.sigma_min), math.log(c.sigma_max), c.num_scales,
                                        dtype=torch.float64))

