"""Ready configs for ``diffusekit train framebridge-digits --out RUN`` (CPU-sized: 3,000 steps, about
16 minutes on one core; docs/plugins/bridge.md): the same video
network and training budget as a bridge (FrameBridge) and as a diffusion model conditioned on the
first frame."""

from __future__ import annotations

from typing import Any

_NET = {"name": "video-unet", "frames": 5, "channels": 1, "size": 16, "base": 16, "ch_mult": [1, 2],
        "num_res_blocks": 1}
_DATA = {"name": "moving-digits", "n": 6000, "frames": 5, "size": 16}
_TRAIN = {"steps": 3000, "batch_size": 64, "lr": 2e-3, "ema": 0.995, "warmup": 100}


def framebridge_recipe() -> dict[str, Any]:
    """Bridge (gmax schedule) from the replicated first frame to the video, v target (trained
    from scratch it beats the eps_psi target by far on this task, docs/plugins/bridge.md),
    bridge SDE sampler with 10 steps (10 NFE). ``diffusekit sample`` without a condition draws
    first frames from held-out moving digits (``cond_data``)."""
    return {"process": {"name": "bridge", "schedule": "gmax",
                        "cond_data": {"name": "moving-digits", "split": "test", "n": 500, "frames": 5, "size": 16}},
            "parameterization": "v-psi",
            "network": dict(_NET), "sampler": {"name": "bridge-sde", "steps": 10}, "data": dict(_DATA),
            "train": dict(_TRAIN)}


def diffusion_i2v_recipe() -> dict[str, Any]:
    """The same network as a VP diffusion model (v target) conditioned on the first frame,
    DDIM with 10 steps (10 NFE)."""
    return {"process": {"name": "vp"}, "parameterization": "v", "network": dict(_NET),
            "sampler": {"name": "ddim", "steps": 10}, "data": dict(_DATA), "train": dict(_TRAIN)}
