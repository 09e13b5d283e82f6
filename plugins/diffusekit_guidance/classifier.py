"""Classifier guidance (Dhariwal & Nichol 2021, eq. 14 / Song et al. 2021, eq. 14).

score_w(x_t, y) = score(x_t) + w grad_x log p_phi(y | x_t), i.e. in noise space
eps_w = eps - c(t) w grad_x log p_phi(y | x_t). With w = 1 and the exact noisy classifier the
guided score is exactly grad log p_t(x | y) (tested against an oracle).

The classifier is any callable ``classifier(x_t, t) -> logits (B, C)`` (t of shape (B,) in the
process's time units); targets are the raw condition passed to ``Pipeline.sample(cond=...)``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.denoiser import DenoiserWrapper, per_sample_time
from diffusekit.errors import ConfigError
from diffusekit.guidance import Guidance
from diffusekit.parameterization import Prediction
from diffusekit.process import AdditiveGaussian, bcast


class ClassifierConfig(ComponentConfig):
    scale: float = Field(1.0, ge=0.0, description="guidance scale w on grad log p(y | x_t)")
    pass_cond: bool = Field(False, description="also pass the labels to the (conditional) network")


class ClassifierDenoiser(DenoiserWrapper):
    def __init__(self, inner, guidance: "ClassifierGuidance"):
        super().__init__(inner)
        self.guidance = guidance

    def __call__(self, x_t, t, cond=None) -> Prediction:
        g = self.guidance
        if cond is None:
            raise ConfigError("classifier guidance needs target labels: pass cond=labels to Pipeline.sample",
                              loc="cond")
        t = per_sample_time(t, x_t)
        pred = self.inner(x_t, t, cond if g.config.pass_cond else None)
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            logp = torch.log_softmax(g.classifier(x_in, t), -1)
            picked = logp.gather(1, torch.as_tensor(cond, device=x_t.device).long().reshape(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, x_in)
        c = bcast(pred.process.coefficients(t)[2], x_t)
        eps = pred.eps.detach() - c * g.scale * grad
        return Prediction(pred.process, x_t, t, cond, eps=eps)


class ClassifierGuidance(Guidance):
    """Gradient of log p(y | x_t) from a user classifier (needs autograd)."""

    Config = ClassifierConfig
    requires = (AdditiveGaussian,)
    needs_grad = True

    def __init__(self, classifier: Optional[Callable[..., torch.Tensor]] = None, **params: Any) -> None:
        super().__init__(**params)
        self.classifier = classifier

    @property
    def scale(self) -> float:
        return float(self.config.scale)

    def wrap(self, denoiser, conditioner=None):
        if self.classifier is None:
            raise ConfigError("classifier guidance needs a classifier: ClassifierGuidance(classifier=fn, ...) "
                              "with fn(x_t, t) -> logits", loc="guidance.classifier")
        return ClassifierDenoiser(denoiser, self)
