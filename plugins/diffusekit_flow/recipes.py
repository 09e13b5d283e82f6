"""Ready pipeline configs for ``diffusekit train rectified-flow-moons --out RUN`` (CPU-sized)."""

from __future__ import annotations

from typing import Any


def moons_recipe() -> dict[str, Any]:
    """Rectified flow on two moons: velocity MLP (sinusoidal input features), midpoint sampler (20 NFE)."""
    return {
        "process": {"name": "rectified-flow"},
        "parameterization": "velocity",
        "network": {"name": "mlp", "dim": 2, "hidden": 128, "depth": 3, "input_features": 16, "input_scale": 4.0},
        "sampler": {"name": "flow-midpoint", "steps": 10},
        "data": {"name": "moons", "n": 10_000},
        "train": {"steps": 2000, "batch_size": 256, "lr": 2e-3, "ema": 0.995, "warmup": 100},
    }


def digits_recipe() -> dict[str, Any]:
    """Rectified flow on scikit-learn's 8x8 digits (1, 8, 8): a small U-Net (base 16, one residual
    block per resolution, 0.16M parameters; about 0.2 s a step on one CPU thread), logit-normal
    training times (Esser et al. 2024), midpoint sampler (20 NFE)."""
    return {
        "process": {"name": "rectified-flow", "time_sampling": "logit-normal"},
        "parameterization": "velocity",
        "network": {"name": "unet", "channels": 1, "image_size": 8, "base": 16, "ch_mult": [1, 2],
                    "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0},
        "sampler": {"name": "flow-midpoint", "steps": 10},
        "data": {"name": "digits"},
        "train": {"steps": 2000, "batch_size": 128, "lr": 1e-3, "ema": 0.999, "warmup": 100},
    }
