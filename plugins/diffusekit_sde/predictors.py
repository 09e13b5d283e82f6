"""Reverse-SDE predictor updates (Song et al. 2021, sampling.py), shared by the stand-alone
samplers (``euler-maruyama``, ``reverse-diffusion``, ``ancestral``) and the ``pc`` sampler.

Each update moves x from t_k to t_{k+1} < t_k given the score s = grad log p_{t_k}(x) and
returns ``(x_next, x_mean)``; ``x_mean`` is the update without its noise term (returned at
the last step when ``denoise_final``, the paper's ``noise_removal``). Per-step coefficients
come from :func:`~.discretization.step_coefficients` (x_k = r x_{k+1} + G z forward):

* Euler-Maruyama (eq. 6 discretised): x_mean = x - (f(x, t_k) - g^2 s) |dt|,
  x = x_mean + g sqrt(|dt|) z.
* Reverse diffusion (eq. 45, ``ReverseDiffusionPredictor``): x_mean = x - (r - 1) x + G^2 s,
  x = x_mean + G z.
* Ancestral (eq. 47 / 4, ``AncestralSamplingPredictor``): x_mean = (x + G^2 s) / r, the
  Tweedie mean E[x_{k+1} | x_k]; noise std G (VP / DDPM: sqrt(beta_i)) or the posterior std
  c_{k+1} G / c_k (VE / SMLD: sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2)).
"""

from __future__ import annotations

from typing import Literal

import torch

from diffusekit.process import SDE, AdditiveGaussian, bcast
from diffusekit.random import randn_like

from .discretization import Discretization, step_coefficients

AncestralVariance = Literal["auto", "transition", "posterior"]


class Predictor:
    """One predictor rule; ``coefficients`` go into the sampler's immutable plan."""

    name = ""

    def __init__(self, discretization: Discretization = "transition", variance: AncestralVariance = "auto"):
        self.discretization = discretization
        self.variance = variance

    def coefficients(self, process, t: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update(self, x, i: int, coef: dict, t: torch.Tensor, score, process, cond, generator,
               add_noise: bool = True):
        raise NotImplementedError


def _noisy(mean: torch.Tensor, std: torch.Tensor, generator, add_noise: bool, process=None, cond=None):
    """mean + std z with z from the process's noise law (``AdditiveGaussian.noise_like``)."""
    if not add_noise:
        return mean
    z = process.noise_like(mean, generator, cond) if isinstance(process, AdditiveGaussian) else \
        randn_like(mean, generator)
    return mean + bcast(std, mean) * z


class EulerMaruyamaPredictor(Predictor):
    name = "euler-maruyama"

    def coefficients(self, process, t):
        dt = t[:-1] - t[1:]
        g2 = process.diffusion(t[:-1]).to(torch.float64) ** 2
        return {"dt": dt, "g2dt": g2 * dt, "std": torch.sqrt(g2 * dt)}

    def update(self, x, i, coef, t, score, process, cond, generator, add_noise=True):
        mean = x - process.drift(x, t, cond) * coef["dt"][i] + coef["g2dt"][i] * score
        return _noisy(mean, coef["std"][i], generator, add_noise, process, cond), mean


class ReverseDiffusionPredictor(Predictor):
    name = "reverse-diffusion"

    def coefficients(self, process, t):
        c = step_coefficients(process, t, self.discretization)
        return {"keep": 2.0 - c["r"], "G2": c["G2"], "std": torch.sqrt(c["G2"])}

    def update(self, x, i, coef, t, score, process, cond, generator, add_noise=True):
        mean = coef["keep"][i] * x + coef["G2"][i] * score
        return _noisy(mean, coef["std"][i], generator, add_noise, process, cond), mean


class AncestralPredictor(Predictor):
    name = "ancestral"

    def coefficients(self, process, t):
        c = step_coefficients(process, t, self.discretization)
        how = self.variance
        if how == "auto":  # the process's own rule (declared on SDE); DDPM's transition std otherwise
            how = process.ancestral_variance if isinstance(process, SDE) else "transition"
        if how == "posterior":
            std = c["c_to"] * torch.sqrt(c["G2"]) / c["c_from"]
        else:
            std = torch.sqrt(c["G2"])
        return {"inv_r": 1.0 / c["r"], "G2": c["G2"], "std": std}

    def update(self, x, i, coef, t, score, process, cond, generator, add_noise=True):
        mean = coef["inv_r"][i] * (x + coef["G2"][i] * score)
        return _noisy(mean, coef["std"][i], generator, add_noise, process, cond), mean


PREDICTORS: dict[str, type[Predictor]] = {
    p.name: p for p in (EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralPredictor)
}
