"""Bridge parameterizations whose x0 stays finite where the bridge is pinned (t = 1: a = c = 0).

With x_t = a x0 + b x1 + c eps = alpha_t (x0 + rho_t w) + ... (see ``processes.py``):

* ``eps-psi`` (Bridge-TTS eq. 14, FrameBridge "eps_psi"): the network predicts
  eps_psi = (x_t / alpha_t - x0) / rho_t, so x0_hat = x_t / alpha_t - rho_t eps_hat (rho_t > 0 for
  t > 0; at t = 1 this is finite). For alpha = 1 it is (x_t - x0) / sigma_t. Loss: unweighted MSE.
* ``v-psi``: v = (a eps - c x0) / r, r = sqrt(a^2 + c^2), on z = x_t - b x1 (the v-prediction of
  Salimans & Ho 2022 for the bridge); x0_hat = (a / r) (z / r) - (c / r) v_hat with the normalised
  coefficients of the process, which are finite at t = 1 (a / r = 0, c / r = 1, z / r := 0), where
  the generic ``v`` divides 0 by 0. Loss: unweighted MSE on v.

Both store x0_hat in the prediction next to their raw output (``eps_psi`` / ``v_psi``), so the
bridge samplers (which read x0 only) accept them; eps, score and v follow lazily where c > 0.
"""

from __future__ import annotations

import torch

from diffusekit.config import ComponentConfig
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import bcast

from .processes import BridgeProcess


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().pow(2).flatten(1).mean(1).mean()


class BridgeTargetLoss(Parameterization):
    """Unweighted MSE between the raw output (``output``) and :meth:`loss_target` at
    t ~ ``process.sample_time``, x_t from the bridge marginal."""

    Config = ComponentConfig
    requires = (BridgeProcess,)

    def loss_target(self, process: BridgeProcess, pert, x0: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, denoiser, x0, cond=None, generator=None):
        process = denoiser.process
        t = process.sample_time(x0.shape[0], generator, x0.device)
        pert = process.perturb(x0, t, cond, generator)
        pred = denoiser(pert.x_t, t, cond)
        return _mse(pred.get(self.output), self.loss_target(process, pert, x0))


class EpsPsi(BridgeTargetLoss):
    """The network predicts eps_psi = (x_t / alpha_t - x0) / rho_t."""

    output = "eps_psi"

    @staticmethod
    def to_x0(process: BridgeProcess, x_t: torch.Tensor, t: torch.Tensor, eps_psi: torch.Tensor) -> torch.Tensor:
        al = bcast(process.alpha(t).to(x_t.real.dtype), x_t)
        rho = bcast(torch.sqrt(process.rho2(t)).to(x_t.real.dtype), x_t)
        return x_t / al - rho * eps_psi

    @staticmethod
    def target(process: BridgeProcess, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        al = bcast(process.alpha(t).to(x_t.real.dtype), x_t)
        rho = bcast(torch.sqrt(process.rho2(t)).to(x_t.real.dtype), x_t)
        return (x_t / al - x0) / rho

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        raw = network(x_t, t, net_cond)
        return Prediction(process, x_t, t, cond, x0=self.to_x0(process, x_t, t, raw), eps_psi=raw)

    def loss_target(self, process, pert, x0):
        return self.target(process, pert.x_t, pert.t, x0)


def v_to_x0(process: BridgeProcess, x_t: torch.Tensor, t: torch.Tensor, cond, v: torch.Tensor) -> torch.Tensor:
    """x0 = (a / r) x~ - (c / r) v with x~ = (x_t - b x1) / r (finite at the pinned end)."""
    ar, cr, _ = process.normalized_coefficients(t)
    dt = x_t.real.dtype
    xr = process.reduced(x_t, t, process.endpoint(cond, x_t))
    return bcast(ar.to(dt), x_t) * xr - bcast(cr.to(dt), x_t) * v


def v_target(process: BridgeProcess, t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = (a / r) eps - (c / r) x0."""
    ar, cr, _ = process.normalized_coefficients(t)
    dt = x0.real.dtype
    return bcast(ar.to(dt), x0) * eps - bcast(cr.to(dt), x0) * x0


class VPsi(BridgeTargetLoss):
    """The network predicts the bridge's v = (a eps - c x0) / sqrt(a^2 + c^2)."""

    output = "v_psi"

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        raw = network(x_t, t, net_cond)
        return Prediction(process, x_t, t, cond, x0=v_to_x0(process, x_t, t, cond, raw), v_psi=raw)

    def loss_target(self, process, pert, x0):
        return v_target(process, pert.t, x0, pert.noise)


__all__ = ["EpsPsi", "VPsi", "v_to_x0", "v_target"]
