"""Complex-safe parameterizations for spectrogram processes (errors use |.|^2, never (.)^2).

* ``sgmse-score``: the network predicts eps_hat = -sigma_t * score, so score = -eps_hat / sigma_t.
  Loss |eps_hat - z|^2 = |sigma_t s + z|^2: denoising score matching with the sigma^2 weighting
  of SGMSE+ (Richter et al. 2023, eq. 13), averaged over bins (the reference sums; only the
  scale of the loss differs).
* ``sgmse-x0``: the network predicts x0 (data prediction, the Schroedinger-bridge loss);
  loss mean |x0_hat - x0|^2. With ``skip=True`` (default) x0_hat = x_t + network(...): the
  network learns the residual, which starts the (zero-initialised) output at the identity.
* ``predictive``: a purely predictive (discriminative) model with the same network: it sees
  (y, t_max, y) and predicts x0; loss mean |x0_hat - x0|^2 (``skip``: x0_hat = y + network).
  Used as the MSE baseline and as StoRM's predictive stage.
"""

from __future__ import annotations

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import AdditiveGaussian

from .processes import ConditionalEndpoint


def sq_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of |a - b|^2 (complex-safe), shape (B,)."""
    return (a - b).abs().pow(2).flatten(1).mean(1)


class _ComplexLoss(Parameterization):
    Config = ComponentConfig
    requires = (AdditiveGaussian,)

    def loss(self, denoiser, x0, cond=None, generator=None):
        process = denoiser.process
        t = process.sample_time(x0.shape[0], generator, x0.device)
        pert = process.perturb(x0, t, cond, generator)
        pred = denoiser(pert.x_t, t, cond)
        target = pert.noise if self.output == "eps" else x0
        return sq_err(pred.get(self.output), target).mean()


class SGMSEScore(_ComplexLoss):
    """eps-prediction (score = -eps_hat / sigma_t) with sigma^2-weighted score matching."""

    output = "eps"


class SkipConfig(ComponentConfig):
    skip: bool = Field(True, description="x0_hat = input + network output (residual learning)")


class SGMSEData(_ComplexLoss):
    """Data prediction x0_hat (Schroedinger-bridge / data-prediction loss)."""

    Config = SkipConfig
    output = "x0"

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        raw = network(x_t, t, net_cond)
        return Prediction(process, x_t, t, cond, x0=x_t + raw if self.config.skip else raw)


class Predictive(Parameterization):
    """Discriminative baseline: x0_hat = network(y, t_max, cond), independent of x_t."""

    Config = SkipConfig
    requires = (ConditionalEndpoint,)
    output = "x0"

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        y = process.endpoint(cond, x_t)
        t_max = torch.full_like(t, float(process.t_max))
        raw = network(y, t_max, net_cond)
        return Prediction(process, x_t, t, cond, x0=y + raw if self.config.skip else raw)

    def loss(self, denoiser, x0, cond=None, generator=None):
        t = torch.full((x0.shape[0],), float(denoiser.process.t_max), device=x0.device)
        return sq_err(denoiser(x0, t, cond).x0, x0).mean()
