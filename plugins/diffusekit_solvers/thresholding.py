"""Dynamic thresholding of data predictions (Saharia et al. 2022, "Imagen", Sec. 2.3).

Per sample, s = clamp(quantile(|x0_hat|, ratio), min=1, max=max_value) and
x0_hat <- clamp(x0_hat, -s, s) / s. Per-sample statistics only, so it keeps batch invariance,
and it has no host sync. Meant for pixel data in [-1, 1] with guidance (DPM-Solver++ Sec. 5).
"""

from __future__ import annotations

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig


class ThresholdingConfig(ComponentConfig):
    thresholding: bool = Field(False, description="dynamic thresholding of x0_hat (Imagen); for data in [-1, 1]")
    threshold_ratio: float = Field(0.995, gt=0.0, lt=1.0, description="quantile of |x0_hat| per sample")
    threshold_max: float = Field(1.0, ge=1.0, description="upper bound of the per-sample threshold s")


def dynamic_threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    flat = x0.abs().flatten(1)
    s = torch.quantile(flat.to(torch.float32) if flat.dtype == torch.float16 else flat, ratio, dim=1)
    s = s.clamp(min=1.0, max=max_value).to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) / s
