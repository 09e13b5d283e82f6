"""Ready pipeline config for ``diffusekit train se3-registration --out RUN`` (CPU-sized)."""

from __future__ import annotations

from typing import Any


def se3_recipe() -> dict[str, Any]:
    """SE(3) diffusion registration: the paper's process and 5-step reverse sampler, the
    DCP-style ``registration`` network (width 64, 2 attention rounds), synthetic pairs with
    partial overlap, noise and outliers (the configuration of docs/plugins/se3.md)."""
    return {
        "process": {"name": "se3"},
        "parameterization": "pose",
        "network": {"name": "registration", "width": 64, "layers": 2},
        "sampler": {"name": "se3-ancestral", "steps": 5},
        "data": {"name": "registration-pairs", "split": "train", "n": 4000, "n_source": 96, "n_model": 96},
        "train": {"steps": 3000, "batch_size": 32, "lr": 1e-3, "ema": 0.999, "warmup": 100},
    }
