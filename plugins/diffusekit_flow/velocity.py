"""The ``velocity`` parameterization: the network predicts the flow-matching target
u = a' x0 + b' y + c' eps (u = eps - x0 on the linear path; Lipman et al. 2022, Liu et al. 2022).

Conversions (exact, any AdditiveGaussian process): with z = x_t - b y and w = u - b' y,

    z = a x0 + c eps,   w = a' x0 + c' eps,   det = a c' - c a'
    x0  = (c' z - c w) / det,     eps = (a w - a' z) / det.

On the linear path det = 1, so x0 = x_t - t u and eps = x_t + (1 - t) u: finite at every t in
[0, 1], including both ends. (On the VP path det = beta a / (2 c).) The prediction carries
``velocity``, ``x0`` and ``eps``; score and v follow through :class:`~diffusekit.parameterization.Prediction`.

Loss: the plain conditional flow-matching MSE, mean over data dimensions and batch,
E_{t, (x0, eps)} |u_theta(x_t, t) - (a' x0 + c' eps)|^2, with t from the process's
``sample_time`` and the pairing (x0, eps) from the ``coupling`` (:mod:`.couplings`):
``independent`` (CFM), ``ot`` (exact minibatch OT, Tong et al. 2023), ``sinkhorn``
(entropic minibatch OT) or ``paired`` (the noise of each example is given in its condition
``{"noise": z}``, e.g. reflow pairs from :func:`diffusekit_flow.reflow_pairs`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import ConfigError, ShapeError
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import AdditiveGaussian, bcast
from diffusekit.random import randn_like

from .couplings import couple


def _coefs(process, t: torch.Tensor, like: torch.Tensor):
    dt = like.real.dtype if like.is_complex() else like.dtype
    a, b, c = (bcast(v.to(dt), like) for v in process.coefficients(t))
    da, db, dc = (bcast(v.to(dt), like) for v in process.coefficient_derivatives(t))
    return a, b, c, da, db, dc


def velocity_of(pred: Prediction) -> torch.Tensor:
    """The velocity dx/dt = a' x0 + b' y + c' eps of a prediction (as given when the network
    predicts it, else from its x0 and eps)."""
    if "velocity" in pred.kinds:
        return pred.get("velocity")
    process, x = pred.process, pred.x_t
    _, _, _, da, db, dc = _coefs(process, pred.t, x)
    u = da * pred.x0 + dc * pred.eps
    y = process.endpoint(pred.cond, x)
    return u if y is None else u + db * y


class VelocityPrediction(Prediction):
    """A prediction given as a velocity; x0 and eps (hence score and v) are derived from it
    exactly, on first use: x0 = (c' z - c w) / det, eps = (a w - a' z) / det.

    ``kinds`` lists x0 and eps as available (they are exact), so code that copies a prediction
    kind by kind (batched CFG, SVDD) or asks for them (the Gaussian solvers) gets them."""

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys([*self._values, "x0", "eps"]))

    def has(self, kind: str) -> bool:
        return kind in ("x0", "eps") or kind in self._values

    def get(self, kind: str) -> Any:
        vals = self._values
        if kind not in vals and kind in ("x0", "eps", "score", "v") and "x0" not in vals:
            process, x_t = self.process, self.x_t
            a, b, c, da, db, dc = _coefs(process, self.t, x_t)
            u = vals["velocity"]
            y = process.endpoint(self.cond, x_t)
            z, w = (x_t, u) if y is None else (x_t - b * y, u - db * y)
            det = a * dc - c * da
            vals["x0"] = (dc * z - c * w) / det
            vals["eps"] = (a * w - da * z) / det
        return super().get(kind)


def velocity_prediction(process, x_t, t, cond, u) -> Prediction:
    """A :class:`Prediction` holding ``velocity`` (x0 / eps / score / v derived exactly on use)."""
    return VelocityPrediction(process, x_t, t, cond, velocity=u)


class VelocityConfig(ComponentConfig):
    coupling: Literal["independent", "ot", "sinkhorn", "paired"] = Field(
        "independent", description="pairing of data and noise in a batch: independent (CFM), ot (exact "
        "minibatch OT), sinkhorn (entropic OT), paired (noise given as cond={'noise': z}, e.g. reflow)")
    sinkhorn_reg: float = Field(0.05, gt=0.0, description="sinkhorn: entropic regularisation, relative to the "
                                "mean pairwise cost of the batch")
    sinkhorn_iters: int = Field(100, ge=1, le=10_000, description="sinkhorn: number of iterations")
    reduce: Literal["mean", "sum"] = Field("mean", description="reduce the squared error over data dimensions")


class Velocity(Parameterization):
    """The network predicts the velocity u = a' x0 + c' eps (u = eps - x0 on the linear path)."""

    Config = VelocityConfig
    requires = (AdditiveGaussian,)
    output = "velocity"

    def predict(self, network, process, x_t, t, cond=None, net_cond=None) -> Prediction:
        raw = network(x_t, t, net_cond)
        return velocity_prediction(process, x_t, t, cond, raw)

    def loss(self, denoiser, x0: Any, cond: Any = None, generator=None) -> torch.Tensor:
        process = denoiser.process
        cfg = self.config
        n = x0.shape[0]
        if cfg.coupling == "paired":
            if not isinstance(cond, dict) or "noise" not in cond:
                raise ConfigError(
                    "coupling 'paired' needs the noise of each example in its condition, cond={'noise': z} "
                    "(diffusekit_flow.reflow_pairs(pipe, n) returns such an Example); got "
                    f"{type(cond).__name__}. Use coupling='independent' for plain data", loc="parameterization.coupling")
            eps = cond["noise"]
            if not torch.is_tensor(eps) or eps.shape != x0.shape:
                raise ShapeError(f"cond['noise']: expected a tensor of shape {tuple(x0.shape)} (one noise per "
                                 f"example), got {tuple(eps.shape) if torch.is_tensor(eps) else type(eps).__name__}")
            eps = eps.to(device=x0.device, dtype=x0.dtype)
            cond = cond.get("cond")
        else:
            eps = randn_like(x0, generator)
            if cfg.coupling != "independent":
                eps = couple(x0, eps, cfg.coupling, reg=cfg.sinkhorn_reg, iters=cfg.sinkhorn_iters,
                             generator=generator)
        t = process.sample_time(n, generator, x0.device)
        a, b, c, da, db, dc = _coefs(process, t, x0)
        x_t = a * x0 + c * eps
        target = da * x0 + dc * eps
        y = process.endpoint(cond, x0)
        if y is not None:
            x_t = x_t + b * y
            target = target + db * y
        out = denoiser(x_t, t, cond).get("velocity")
        err = ((out - target) ** 2).flatten(1)
        per = err.mean(1) if cfg.reduce == "mean" else 0.5 * err.sum(1)
        return per.mean()
