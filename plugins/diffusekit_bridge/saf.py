"""SNR-aligned fine-tuning (SAF; Wang et al. 2024, "FrameBridge", section 4.2, eq. 9).

A diffusion network trained on x~ = alpha_d x0 + sigma_d eps (alpha_d^2 + sigma_d^2 = 1, a VP
process of the score-SDE plugin) becomes a bridge denoiser without changing its weights' meaning:
the bridge state x_t = a x0 + b x1 + c eps is reduced to

    x~ = (x_t - b x1) / sqrt(a^2 + c^2) = (a / r) x0 + (c / r) eps,

which is exactly a diffusion state at the diffusion time t_d whose signal-to-noise ratio
alpha_d / sigma_d equals a / c (t_d = diffusion.t_from_log_snr(2 log(a / c)), clamped to the
diffusion's time range). The bridge's v = (a eps - c x0) / r equals the diffusion's v at t_d, so
a ``v`` diffusion network is used as is, and fine-tuning trains the same v target on bridge
samples (an ``eps`` network cannot serve: its x0 = (x~ - sigma_d eps) / alpha_d divides by
alpha_d = a / r = 0 at the pinned end, where the bridge samplers start). At the pinned end (t = 1, a / c = 0) x~ := 0 and t_d = 1.

The ``saf`` parameterization does this around any network ``network(x, t, cond)``; the network
sees the diffusion's time t_d (and the condition unchanged).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from diffusekit.config import ComponentConfig
from diffusekit.errors import CompatibilityError
from diffusekit.parameterization import Prediction
from diffusekit.process import AdditiveGaussian

from .parameterizations import VPsi, v_to_x0
from .processes import BridgeProcess


class SAFConfig(ComponentConfig):
    diffusion: Any = Field({"name": "vp"}, description="process spec of the pretrained diffusion model "
                           "(an AdditiveGaussian with b = 0 and a^2 + c^2 = 1, e.g. {'name': 'vp'})")

    @field_validator("diffusion")
    @classmethod
    def _spec(cls, v):
        if isinstance(v, str):
            return {"name": v}
        if not isinstance(v, dict) or "name" not in v:
            raise ValueError(f"diffusion must be a process name or {{'name': ...}} spec, got {v!r}")
        return v


class SAF(VPsi):
    """Bridge denoiser from a diffusion network at the SNR-aligned time (see module docstring);
    the loss is the ``v-psi`` loss."""

    Config = SAFConfig

    def __init__(self, **params):
        super().__init__(**params)
        from diffusekit.api import create

        self.diffusion = create("process", self.config.diffusion, loc="saf.diffusion")
        if not isinstance(self.diffusion, AdditiveGaussian):
            raise CompatibilityError(f"saf.diffusion: {type(self.diffusion).__name__} is not an AdditiveGaussian "
                                     "process; SAF aligns the signal-to-noise ratio of a Gaussian diffusion ('vp')")
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        a, b, c = self.diffusion.coefficients(t.clamp_min(1e-3))
        if b.abs().max() > 0 or (a * a + c * c - 1).abs().max() > 1e-6:
            raise CompatibilityError(f"saf.diffusion: {self.config.diffusion['name']!r} is not variance preserving "
                                     "(needs b = 0 and a^2 + c^2 = 1, e.g. 'vp'); x~ has unit scale")
        lo, hi = self.diffusion.train_t_min, float(self.diffusion.t_max)
        lam = self.diffusion.log_snr(torch.tensor([hi, lo], dtype=torch.float64))
        self._lam_range = (float(lam[0]), float(lam[1]))

    def aligned_time(self, process: BridgeProcess, t: torch.Tensor) -> torch.Tensor:
        """t_d with log-SNR_d(t_d) = 2 log(a / c), clamped to the diffusion's range."""
        ar, cr, _ = process.normalized_coefficients(t.to(torch.float64))
        lam = 2 * (torch.log(ar.clamp_min(1e-300)) - torch.log(cr.clamp_min(1e-300)))
        lam = lam.clamp(*self._lam_range)
        return self.diffusion.t_from_log_snr(lam).clamp(self.diffusion.train_t_min, self.diffusion.t_max).to(t.dtype)

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        xr = process.reduced(x_t, t, process.endpoint(cond, x_t))
        raw = network(xr, self.aligned_time(process, t), net_cond)
        return Prediction(process, x_t, t, cond, x0=v_to_x0(process, x_t, t, cond, raw), v_psi=raw)


__all__ = ["SAF", "SAFConfig"]
