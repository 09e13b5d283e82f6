"""Diffusion posterior sampling (Chung et al. 2023, "Diffusion Posterior Sampling for General
Noisy Inverse Problems").

Measurement model y = A(x0) + sigma_y n. DPS approximates p(y | x_t) by p(y | x0_hat(x_t))
(Thm. 1), so the posterior score is

  grad log p_t(x_t | y) ~= score(x_t) - grad_{x_t} ||y - A(x0_hat(x_t))||^2 / (2 sigma_y^2)   (eq. 16)

Two ways to apply it (``mode``):

* ``"step"`` (default; the paper's Algorithm 1): the sampler takes its ordinary step x'_{i+1}, then
  x_{i+1} = x'_{i+1} - zeta grad_{x_i} ||y - A(x0_hat(x_i))||^2 / ||y - A(x0_hat(x_i))||
  (zeta_i = zeta' / ||residual||, ``scale`` = zeta'); the gradient is taken at the state the
  sampler's network call saw and carried in the prediction (``dps_grad``). Works with any sampler
  that reports its prediction.
* ``"score"``: the likelihood score enters the prediction, eps = -c (score + guidance), so the
  sampler applies it with its own step coefficient: ``weighting="gaussian"`` uses eq. 16 times
  ``scale``; ``weighting="normalized"`` uses -zeta' grad ||residual||.

The gradient flows through the network (``needs_grad``); states are detached between steps.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.denoiser import DenoiserWrapper, per_sample_time
from diffusekit.errors import CompatibilityError, ConfigError, ShapeError
from diffusekit.guidance import Guidance
from diffusekit.parameterization import Prediction
from diffusekit.process import AdditiveGaussian, bcast


class DPSConfig(ComponentConfig):
    mode: Literal["step", "score"] = Field("step", description="step: Algorithm 1 after each sampler step; "
                                                                 "score: as a likelihood score")
    weighting: Literal["gaussian", "normalized"] = Field(
        "gaussian", description="score mode: gaussian |r|^2/(2 sigma_y^2) (eq. 16) or normalized zeta |r|")
    scale: float = Field(1.0, gt=0.0, description="multiplier of the likelihood score (zeta' when normalized)")
    noise: float = Field(0.05, gt=0.0, description="measurement noise std sigma_y (gaussian weighting)")


class DPSDenoiser(DenoiserWrapper):
    def __init__(self, inner, guidance: "DPS"):
        super().__init__(inner)
        self.guidance = guidance

    def __call__(self, x_t, t, cond=None) -> Prediction:
        g = self.guidance
        cfg = g.config
        t = per_sample_time(t, x_t)
        y = g.measurement.to(x_t.device, x_t.dtype)
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            pred = self.inner(x_in, t, cond)
            r = (y - g.operator(pred.x0)).flatten(1)
            sq = (r * r).sum(1)
            if cfg.mode == "step" or cfg.weighting == "normalized":
                objective = torch.sqrt(sq + 1e-12).sum()  # grad |r| = grad |r|^2 / (2 |r|)
            else:
                objective = sq.sum() / (2 * cfg.noise ** 2)
            (grad,) = torch.autograd.grad(objective, x_in)
        if cfg.mode == "step":
            return Prediction(pred.process, x_t, t, cond, x0=pred.x0.detach(), eps=pred.eps.detach(),
                              dps_grad=2 * cfg.scale * grad)
        c = bcast(pred.process.coefficients(t)[2], x_t)
        eps = pred.eps.detach() + c * cfg.scale * grad
        return Prediction(pred.process, x_t, t, cond, eps=eps)


class DPS(Guidance):
    """Diffusion posterior sampling for y = A(x0) + noise with a differentiable operator A."""

    Config = DPSConfig
    requires = (AdditiveGaussian,)
    needs_grad = True

    def __init__(self, operator: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 measurement: Optional[torch.Tensor] = None, **params: Any) -> None:
        super().__init__(**params)
        self.operator = operator
        self.measurement = None if measurement is None else torch.as_tensor(measurement)

    def set_measurement(self, operator=None, measurement=None) -> "DPS":
        if operator is not None:
            self.operator = operator
        if measurement is not None:
            self.measurement = torch.as_tensor(measurement)
        return self

    def wrap(self, denoiser, conditioner=None):
        if self.operator is None or self.measurement is None:
            raise ConfigError("dps needs a forward operator and a measurement: DPS(operator=A, measurement=y, "
                              "...) or .set_measurement(A, y)", loc="guidance.operator")
        return DPSDenoiser(denoiser, self)

    def on_step(self, x: Any, info: dict[str, Any]) -> Any:
        if self.config.mode != "step":
            return x
        pred = info.get("prediction")
        if pred is None or "dps_grad" not in pred.kinds:
            raise CompatibilityError("dps mode='step' needs the sampler to report each step's prediction; "
                                     "use mode='score' with this sampler")
        return (x - pred.get("dps_grad")).detach()

    def bound(self, cond: Any, fit) -> None:
        if self.measurement is not None and self.measurement.ndim == 0:
            raise ShapeError("dps measurement must be a tensor (B, ...) or one per-sample measurement")
