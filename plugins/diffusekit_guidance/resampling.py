"""Per-population systematic resampling on the device, without host syncs.

The batch is split into contiguous populations of ``group`` particles. Each population is
resampled (Douc & Cappe 2005, systematic scheme: u_j = (U + j) / M) only where its effective
sample size ESS = 1 / sum_j w_j^2 falls below ``threshold * M`` (or when ``force``); the
choice is a ``torch.where``, never a Python branch on tensor values.
"""

from __future__ import annotations

from typing import Any

import torch

from diffusekit.errors import ConfigError


def population_size(batch: int, group: int | None) -> int:
    m = batch if group is None else group
    if batch % m != 0:
        raise ConfigError(f"batch of {batch} particles is not a multiple of group_size={m}; sample n = k * "
                          f"{m} states", loc="guidance.group_size")
    return m


def gather_state(x: Any, flat_idx: torch.Tensor) -> Any:
    if torch.is_tensor(x):
        return x.index_select(0, flat_idx.to(x.device))
    return {k: v.index_select(0, flat_idx.to(v.device)) for k, v in x.items()}


def systematic_resample(log_w: torch.Tensor, group: int, threshold: float, generator: torch.Generator,
                        force: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (flat ancestor indices (B,), new log-weights (B,), resampled mask per population)."""
    b = log_w.shape[0]
    pops = b // group
    lw = log_w.reshape(pops, group).to(torch.float64)
    w = torch.softmax(lw, 1)
    ess = 1.0 / (w * w).sum(1)
    need = torch.ones_like(ess, dtype=torch.bool) if force else ess < threshold * group
    u0 = torch.rand((pops, 1), generator=generator, dtype=torch.float64).to(lw.device)
    u = (u0 + torch.arange(group, device=lw.device, dtype=torch.float64)[None]) / group
    cdf = torch.cumsum(w, 1)
    cdf[:, -1] = 1.0
    idx = torch.searchsorted(cdf, u).clamp_max(group - 1)
    keep = torch.arange(group, device=lw.device)[None].expand(pops, -1)
    idx = torch.where(need[:, None], idx, keep)
    flat = (idx + group * torch.arange(pops, device=lw.device)[:, None]).reshape(-1)
    new_lw = torch.where(need[:, None], torch.zeros_like(lw), lw).reshape(-1).to(log_w.dtype)
    return flat, new_lw, need
