"""Gaussian parameterizations eps, x0, v, score for any AdditiveGaussian process.

Loss (Song et al. 2021, eq. 7) with x_t = a x0 + b y + c eps, t ~ p(t):

* ``weighting="native"``: mean |f_theta - target|^2 on the network's own target
  (eps, x0, v, or c * score = -eps for ``score``, i.e. lambda(t) = sigma^2).
* ``"sigma2"``: lambda = c^2 on the score, |c s_theta + eps|^2 = |eps_hat - eps|^2.
* ``"likelihood"``: lambda = g(t)^2 (Song et al. 2021b), g^2 / c^2 |eps_hat - eps|^2. With
  ``importance_sampling`` t is drawn with density proportional to g^2 / c^2 on
  [train_eps, 1] (inverse CDF on a float64 grid) and the weight becomes the constant Z.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import CompatibilityError
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import SDE, AdditiveGaussian, Product, bcast
from diffusekit.random import rand
from diffusekit.state import batch_size, first_leaf


class GaussianLossConfig(ComponentConfig):
    weighting: Literal["native", "sigma2", "likelihood"] = Field(
        "native", description="loss weighting lambda(t)")
    importance_sampling: bool = Field(False, description="with likelihood weighting: t ~ g^2/c^2")
    reduce: Literal["mean", "sum"] = Field("mean", description="reduce over data dimensions")


def _reduce(err: torch.Tensor, how: str) -> torch.Tensor:
    per = err.flatten(1)
    return per.mean(1) if how == "mean" else 0.5 * per.sum(1)


class _ImportanceSampler:
    """Inverse-CDF sampler for p(t) proportional to g(t)^2 / c(t)^2 on [eps, 1].

    The density behaves like 1 / t near 0 (VP: g^2 / c^2 ~ b0 / (b0 t)), so the CDF is
    tabulated by the trapezoid rule on a geometric grid (uniform in log t), which resolves
    the mass near eps; times are interpolated linearly within a cell.
    """

    def __init__(self, process, eps: float, n: int = 20_001):
        t = torch.logspace(torch.log10(torch.tensor(eps)).item(), 0.0, n, dtype=torch.float64)
        w = process.diffusion(t) ** 2 / process.coefficients(t)[2] ** 2
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                         torch.cumsum((w[1:] + w[:-1]) / 2 * (t[1:] - t[:-1]), 0)])
        self.Z = float(cdf[-1])
        self.t, self.cdf = t, cdf / cdf[-1]

    def sample(self, n, generator, device):
        u = rand((n,), generator, "cpu", torch.float64)
        idx = torch.searchsorted(self.cdf, u).clamp(1, len(self.t) - 1)
        c0, c1 = self.cdf[idx - 1], self.cdf[idx]
        t0, t1 = self.t[idx - 1], self.t[idx]
        frac = (u - c0) / (c1 - c0).clamp_min(1e-300)
        return (t0 + frac * (t1 - t0)).to(device=device, dtype=torch.float32)


class GaussianParameterization(Parameterization):
    """Base of eps / x0 / v / score parameterizations.

    On a Product process (dict states) the network returns one output per key; the loss is
    the sum over keys of each key's loss under its own component's coefficients, at one
    shared time per sample."""

    Config = GaussianLossConfig
    requires = (AdditiveGaussian,)
    supports_product = True

    def _target(self, x0, eps, a, c, z_t):
        raise NotImplementedError

    def _product_loss(self, denoiser, x0, cond, generator):
        process = denoiser.process
        cfg = self.config
        if cfg.weighting != "native" or cfg.importance_sampling:
            raise CompatibilityError(f"{type(self).__name__}: a Product process trains with weighting='native' "
                                     f"(per-key losses), got weighting={cfg.weighting!r}")
        t = process.sample_time(batch_size(x0), generator, first_leaf(x0).device)
        pert = process.perturb(x0, t, cond, generator)
        pred = denoiser(pert.x_t, t, cond)
        out = pred.get(self.output)
        total = 0.0
        for k, p in process.components.items():
            a, _, c = p.coefficients(t)
            xk = x0[k]
            target = self._target(xk, pert.noise[k], bcast(a, xk), bcast(c, xk), pert.x_t[k])
            total = total + _reduce((out[k] - target) ** 2, cfg.reduce).mean()
        return total

    def loss(self, denoiser, x0, cond=None, generator=None):
        process = denoiser.process
        if isinstance(process, Product):
            return self._product_loss(denoiser, x0, cond, generator)
        cfg = self.config
        n = x0.shape[0]
        iw = None
        if cfg.weighting == "likelihood" and cfg.importance_sampling:
            if not isinstance(process, SDE):
                raise CompatibilityError("likelihood weighting needs an SDE process (it uses g(t))")
            cache = self.__dict__.setdefault("_is", {})
            key = id(process)
            if key not in cache:
                cache[key] = _ImportanceSampler(process, process.train_t_min)
            t = cache[key].sample(n, generator, x0.device)
            iw = cache[key].Z
        else:
            t = process.sample_time(n, generator, x0.device)
        pert = process.perturb(x0, t, cond, generator)
        pred = denoiser(pert.x_t, t, cond)
        a, _, c = process.coefficients(t)
        if cfg.weighting == "native":
            target = self._target(x0, pert.noise, bcast(a, x0), bcast(c, x0), pert.x_t)
            err = (pred.get(self.output) - target) ** 2
            return _reduce(err, cfg.reduce).mean()
        err = _reduce((pred.eps - pert.noise) ** 2, cfg.reduce)
        if cfg.weighting == "likelihood":
            if iw is not None:
                err = err * iw
            else:
                if not isinstance(process, SDE):
                    raise CompatibilityError("likelihood weighting needs an SDE process (it uses g(t))")
                err = err * process.diffusion(t) ** 2 / c ** 2
        return err.mean()


class Eps(GaussianParameterization):
    """The network predicts the noise eps (DDPM)."""

    output = "eps"

    def _target(self, x0, eps, a, c, z_t):
        return eps


class X0(GaussianParameterization):
    """The network predicts the clean data x0."""

    output = "x0"

    def _target(self, x0, eps, a, c, z_t):
        return x0


class V(GaussianParameterization):
    """The network predicts v = (a eps - c x0) / sqrt(a^2 + c^2) (Salimans & Ho 2022)."""

    output = "v"

    def _target(self, x0, eps, a, c, z_t):
        return (a * eps - c * x0) / torch.sqrt(a * a + c * c)


class Score(GaussianParameterization):
    """The network predicts the score grad log p_t(x) = -eps / c; native loss |c s + eps|^2."""

    output = "score"

    def _target(self, x0, eps, a, c, z_t):
        return -eps / c

    def loss(self, denoiser, x0, cond=None, generator=None):
        if self.config.weighting == "native" and not isinstance(denoiser.process, Product):
            # sigma^2 weighting: |c * s_theta + eps|^2 (Song et al. 2021, losses.py)
            process = denoiser.process
            t = process.sample_time(x0.shape[0], generator, x0.device)
            pert = process.perturb(x0, t, cond, generator)
            pred = denoiser(pert.x_t, t, cond)
            c = bcast(process.coefficients(t)[2], x0)
            return _reduce((c * pred.score + pert.noise) ** 2, self.config.reduce).mean()
        return super().loss(denoiser, x0, cond, generator)


__all__ = ["Eps", "X0", "V", "Score", "Prediction"]
