"""EDM preconditioning (Karras et al. 2022, Table 1 / eq. 7) for any SigmaParameterized process.

With sigma = process.sigma(t) and sd = sigma_data the denoiser is

    D(x, sigma) = c_skip x + c_out F(c_in x, c_noise),
    c_skip = sd^2 / (sigma^2 + sd^2),   c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),    c_noise = ln(sigma) / 4.

**What the network receives** (the network-call contract ``network(x, t, cond)`` of docs/architecture.md): with
``precondition=True`` (default) it is called as ``network(c_in * x_t, c_noise, cond)`` with
``c_noise = ln(sigma) / 4`` of shape (B,), and its output is F (not x0). With
``precondition=False`` it is called as ``network(x_t, sigma, cond)`` and must return x0
directly (used for exact oracles and for networks with their own scaling).

Loss (EDM eq. 8 with the process's own perturbation, which for PFGM++ is the heavy-tailed
kernel: the perturbation-based objective of Xu et al. 2023): E_sigma E_{y, n} lambda(sigma) |D(y + n, sigma) - y|^2 with
lambda = (sigma^2 + sd^2) / (sigma sd)^2, sigma from ``process.sample_time`` (log-normal).
The squared error is averaged over data dimensions (EDM sums; the factor is a constant).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import ShapeError
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import AdditiveGaussian, SigmaParameterized, bcast


class EDMConfig(ComponentConfig):
    sigma_data: float = Field(0.5, gt=0, description="data standard deviation sd (EDM: 0.5 for [-1, 1] images)")
    precondition: bool = Field(True, description="False: network(x_t, sigma) returns x0 directly")


class EDMPrecond(Parameterization):
    """EDM preconditioned x0 prediction (see module docstring for the exact network call)."""

    Config = EDMConfig
    requires = (SigmaParameterized,)
    output = "x0"

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise) of shape sigma.shape (EDM Table 1)."""
        sd = self.config.sigma_data
        s2 = sigma * sigma + sd * sd
        return sd * sd / s2, sigma * sd / torch.sqrt(s2), 1.0 / torch.sqrt(s2), torch.log(sigma) / 4

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (EDM Table 1): unit effective weight."""
        sd = self.config.sigma_data
        return (sigma * sigma + sd * sd) / (sigma * sd) ** 2

    def denoise(self, network, process, x_t: torch.Tensor, t: torch.Tensor, net_cond: Any = None) -> torch.Tensor:
        """D(x_t, sigma(t)) in x_t's dtype."""
        if not torch.is_tensor(x_t):
            raise ShapeError(f"edm parameterization: expected a Tensor state, got {type(x_t).__name__}")
        sigma = process.sigma(t).to(x_t.dtype)
        if not self.config.precondition:
            return network(x_t, sigma, net_cond)
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        out = network(bcast(c_in, x_t) * x_t, c_noise, net_cond)
        return bcast(c_skip, x_t) * x_t + bcast(c_out, x_t) * out.to(x_t.dtype)

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        x0 = self.denoise(network, process, x_t, t, net_cond)
        if isinstance(process, AdditiveGaussian):
            return Prediction(process, x_t, t, cond, x0=x0)
        # Non-Gaussian kernels (PFGM++): eps = E[n / sigma | x] = (x - D) / sigma is still exact
        # (the posterior mean of the normalised perturbation); a score is not derivable.
        sigma = bcast(process.sigma(t).to(x_t.dtype), x_t)
        return Prediction(process, x_t, t, cond, x0=x0, eps=(x_t - x0) / sigma)

    def loss(self, denoiser, x0, cond=None, generator=None) -> torch.Tensor:
        process = denoiser.process
        t = process.sample_time(x0.shape[0], generator, x0.device)
        pert = process.perturb(x0, t, cond, generator)
        pred = denoiser(pert.x_t, t, cond)
        err = (pred.x0 - x0).pow(2).flatten(1).mean(1)
        return (self.loss_weight(process.sigma(t).to(err.dtype)) * err).mean()
