"""Ready pipeline configs for ``diffusekit train sgmse --out RUN`` (CPU-sized defaults)."""

from __future__ import annotations

from typing import Any


def sgmse_recipe() -> dict[str, Any]:
    """SGMSE+: OUVE process, sigma^2-weighted score matching, a 0.6M-parameter NCSN++-style U-Net
    (the configuration trained in docs/plugins/sgmse.md), PC sampler (N 30, 60 NFE)."""
    return {
        "process": {"name": "ouve"},
        "parameterization": "sgmse-score",
        "network": {"name": "ncsnpp", "preset": "custom", "nf": 8, "ch_mult": [1, 2, 4, 8]},
        "sampler": {"name": "sgmse-pc", "steps": 30, "snr": 0.5},
        "data": {"name": "sgmse-synthetic", "split": "train", "n": 300, "frames": 32, "crops_per_pair": 3},
        "train": {"steps": 2000, "batch_size": 4, "lr": 2e-3, "ema": 0.995, "warmup": 50},
    }


def sgmse_sb_recipe() -> dict[str, Any]:
    """Schroedinger bridge (SBVE) with data prediction and the bridge ODE sampler (N 50)."""
    cfg = sgmse_recipe()
    cfg.update(process={"name": "sb"}, parameterization="sgmse-x0", sampler={"name": "sb-ode", "steps": 50})
    return cfg
