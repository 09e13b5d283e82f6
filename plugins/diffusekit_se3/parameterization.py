"""Parameterization ``pose``: the network's output is a pose on SE(3).

``correction=True`` (default, as in DiffusionReg): the network returns the correction dH that
aligns the currently transformed source H_t X with the model, and H0_hat = dH H_t.
``correction=False``: the network returns H0_hat itself. The prediction stores H0_hat as
``x0`` (the clean state) and the raw output as ``pose``.

Loss (the paper's implemented objective): the L1 distance between the source cloud moved by
the prediction and by the true pose, mean over points and coordinates:
    L = mean |R_hat x + p_hat - (R0 x + p0)|_1,   x in cond["source"].
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import LieGroup

from . import lie
from .networks import _clouds


class PoseConfig(ComponentConfig):
    correction: bool = Field(True, description="the network predicts dH with H0_hat = dH H_t (else H0_hat)")


class Pose(Parameterization):
    """Network output -> H0_hat on SE(3); point-alignment L1 loss."""

    Config = PoseConfig
    requires = (LieGroup,)
    output = "pose"

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        raw = network(x_t, t, net_cond)
        h0 = raw @ x_t if self.config.correction else raw
        return Prediction(process, x_t, t, cond, pose=raw, x0=h0)

    def loss(self, denoiser, x0: torch.Tensor, cond: Any = None, generator=None) -> torch.Tensor:
        process = denoiser.process
        source, _ = _clouds(cond)
        t = process.sample_time(x0.shape[0], generator, x0.device)
        pert = process.perturb(x0, t, cond, generator)
        pred = denoiser(pert.x_t, t, cond)
        moved = lie.transform(pred.x0.to(source.dtype), source)
        target = lie.transform(x0.to(source.dtype), source)
        return (moved - target).abs().mean()
