"""Controllable generation by replacement (Song et al. 2021, appendix I.2,
controllable_generation.py): inpainting and colorization as guidance components.

Inpainting with known values y on a mask m (1 = known): after every sampler step, which ends
at time t, the known part is replaced by a fresh forward sample
x <- x (1 - m) + (a(t) y + c(t) z) m, z ~ N(0, I). At the sampling end (t <= t_min) the
known part is set to y exactly. The initial state is y m + prior (1 - m) would change nothing
visible at t_max (a(t_max) ~ 0), so the prior is kept.

Colorization is the same replacement in the space of a fixed orthonormal colour matrix M
whose first column is the grey axis (1, 1, 1) / sqrt(3): with u = M^T x per pixel,
u_0 = sqrt(3) * grey; u_0 is replaced by the perturbed observation and x = M u. Because M is
orthonormal the noise of u is again N(0, I), so the rule is exact for any AdditiveGaussian
process with b = 0.

The observation is given at construction (``Inpaint(image=y, mask=m)``), with
``observe(...)``, or per call as ``pipe.sample(n, cond={"image": y, "mask": m})``. A per-call
observation and the process are held by the bound copy of the guidance that
:meth:`~diffusekit.guidance.Guidance.bind` returns for that call, never by the shared object.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import CompatibilityError, ConfigError, ShapeError
from diffusekit.guidance import Guidance
from diffusekit.process import AdditiveGaussian, bcast
from diffusekit.random import randn_like


class ReplacementConfig(ComponentConfig):
    exact_end: bool = Field(True, description="set the known part to the observation itself at t <= t_min")


class _Replacement(Guidance):
    Config = ReplacementConfig
    requires = (AdditiveGaussian,)
    #: per call (set on the bound copy): the pipeline's process
    _process: Any = None

    def check_fit(self, fit) -> None:
        if fit.process.endpoint(None, torch.zeros(1)) is not None:
            raise CompatibilityError(f"{type(self).__name__.lower()} replaces with a(t) y + c(t) z, which needs "
                                     f"b(t) = 0; {type(fit.process).__name__} has a condition endpoint")

    def bound(self, cond: Any, fit) -> None:
        self._process = fit.process

    def _perturb(self, y: torch.Tensor, x: torch.Tensor, t: torch.Tensor, generator) -> torch.Tensor:
        if self._process is None:
            raise ConfigError(f"{type(self).__name__} is not bound to a sampling call (pass it as guidance=... "
                              "to a Pipeline)")
        tt = t.to(torch.float64).reshape(1).expand(x.shape[0])
        a, _, c = self._process.coefficients(tt)
        if self.config.exact_end:
            end = float(self._process.t_min)
            at_end = tt <= end + 1e-6 * max(end, 1e-6)
            a = torch.where(at_end, torch.ones_like(a), a)
            c = torch.where(at_end, torch.zeros_like(c), c)
        a, c = a.to(x.dtype), c.to(x.dtype)
        return bcast(a, y) * y + bcast(c, y) * randn_like(y, generator)


class Inpaint(_Replacement):
    """Replacement inpainting: known pixels (mask = 1) follow the forward process of ``image``."""

    def __init__(self, image: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, **params: Any):
        super().__init__(**params)
        self.image, self.mask = None, None
        if image is not None or mask is not None:
            self.observe(image, mask)

    def observe(self, image, mask) -> "Inpaint":
        if image is None or mask is None:
            raise ConfigError("inpaint needs both image and mask (1 = known)", loc="guidance.image")
        image, mask = torch.as_tensor(image), torch.as_tensor(mask)
        try:
            torch.broadcast_shapes(image.shape, mask.shape)
        except RuntimeError:
            raise ShapeError(f"inpaint: mask shape {tuple(mask.shape)} does not broadcast against image "
                             f"shape {tuple(image.shape)}") from None
        self.image, self.mask = image, mask.to(image.dtype)
        return self

    def bound(self, cond: Any, fit) -> None:
        super().bound(cond, fit)
        if isinstance(cond, dict) and "image" in cond and "mask" in cond:
            self.observe(cond["image"], cond["mask"])
        if self.image is None:
            raise ConfigError("inpaint has no observation: Inpaint(image=y, mask=m), .observe(y, m) or "
                              "pipe.sample(n, cond={'image': y, 'mask': m})", loc="guidance.image")

    def on_step(self, x: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        y = self.image.to(device=x.device, dtype=x.dtype).expand_as(x)
        m = self.mask.to(device=x.device, dtype=x.dtype)
        known = self._perturb(y, x, info["t"], info.get("generator"))
        return x * (1 - m) + known * m


def colour_matrix(dtype=torch.float64) -> torch.Tensor:
    """Orthonormal 3x3 M with columns (1,1,1)/sqrt3, (-2,1,1)/sqrt6, (0,1,-1)/sqrt2."""
    return torch.tensor([[1 / math.sqrt(3), -2 / math.sqrt(6), 0.0],
                         [1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)],
                         [1 / math.sqrt(3), 1 / math.sqrt(6), -1 / math.sqrt(2)]], dtype=dtype)


def decouple(x: torch.Tensor) -> torch.Tensor:
    """u = M^T x per pixel, channels on dim 1 (B, 3, H, W)."""
    return torch.einsum("ij,bi...->bj...", colour_matrix(x.dtype).to(x.device), x)


def couple(u: torch.Tensor) -> torch.Tensor:
    """x = M u per pixel (inverse of :func:`decouple`)."""
    return torch.einsum("ij,bj...->bi...", colour_matrix(u.dtype).to(u.device), u)


class Colorize(_Replacement):
    """Replacement colorization of grey images (B, 1, H, W) into RGB states (B, 3, H, W)."""

    def __init__(self, grey: Optional[torch.Tensor] = None, **params: Any):
        super().__init__(**params)
        self.grey = None if grey is None else torch.as_tensor(grey)

    def observe(self, grey) -> "Colorize":
        self.grey = torch.as_tensor(grey)
        return self

    def bound(self, cond: Any, fit) -> None:
        super().bound(cond, fit)
        if isinstance(cond, dict) and "grey" in cond:
            self.observe(cond["grey"])
        if self.grey is None:
            raise ConfigError("colorize has no observation: Colorize(grey=g), .observe(g) or "
                              "pipe.sample(n, cond={'grey': g}) with g of shape (B, 1, H, W)", loc="guidance.grey")

    def on_step(self, x: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        if x.ndim < 2 or x.shape[1] != 3:
            raise ShapeError(f"colorize needs RGB states (B, 3, ...), got {tuple(x.shape)}")
        g = self.grey.to(device=x.device, dtype=x.dtype)
        u = decouple(x)
        u0 = math.sqrt(3) * g.expand_as(u[:, :1])
        known = self._perturb(u0, u[:, :1], info["t"], info.get("generator"))
        return couple(torch.cat([known, u[:, 1:]], dim=1))
