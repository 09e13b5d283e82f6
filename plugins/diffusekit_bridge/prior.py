"""The neural prior of FrameBridge (Wang et al. 2024, section 4.3): a regression network that
predicts a coarse video from the first frame, used as the bridge endpoint x1 in place of the
first frame replicated along time.

``NeuralPrior(image) -> video``: the video network (``VideoUNet``) at a fixed time, fed the
replicated first frame, predicting a residual on it; trained with plain MSE to the video
(:func:`train_prior`). :func:`prior_condition` builds the bridge condition
``{"image": first frame, "x1": prior video}`` (the prior is frozen, so x1 is a deterministic
function of the first frame, as the bridge requires).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from .networks import VideoUNet


class NeuralPrior(nn.Module):
    """x1 = image replicated + VideoUNet(image replicated, t = 0, image)."""

    def __init__(self, frames: int = 5, channels: int = 1, size: int = 16, base: int = 32, ch_mult=(1, 2),
                 num_res_blocks: int = 1):
        super().__init__()
        self.frames = frames
        self.net = VideoUNet(frames=frames, channels=channels, size=size, base=base, ch_mult=ch_mult,
                             num_res_blocks=num_res_blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        rep = image.unsqueeze(1).expand(image.shape[0], self.frames, *image.shape[1:])
        t = torch.zeros(image.shape[0], device=image.device, dtype=image.dtype)
        return rep + self.net(rep, t, image)


@torch.no_grad()
def prior_condition(prior: NeuralPrior, image: torch.Tensor, batch: int = 512) -> dict:
    """``{"image": image, "x1": prior(image)}`` for the bridge (the prior is evaluated in eval mode)."""
    prior.eval()
    x1 = torch.cat([prior(image[i:i + batch]) for i in range(0, image.shape[0], batch)])
    return {"image": image, "x1": x1}


def train_prior(prior: NeuralPrior, videos: torch.Tensor, images: torch.Tensor, steps: int, batch_size: int = 64,
                lr: float = 2e-3, seed: int = 0, out: str | Path | None = None, log=None) -> float:
    """MSE regression of ``videos`` from ``images``; Adam with cosine decay; saves
    ``out/prior.safetensors`` at the end; returns the wall time in seconds."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    prior.train()
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, videos.shape[0], (batch_size,), generator=g)
        loss = (prior(images[idx]) - videos[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 200 == 0 or step == steps - 1):
            log(f"prior step {step} loss {loss.item():.4f}")
    seconds = time.perf_counter() - start
    if out is not None:
        from safetensors.torch import save_file

        Path(out).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in prior.state_dict().items()}, str(Path(out) / "prior.safetensors"))
    prior.eval()
    return seconds


def load_prior(path: str | Path, **kwargs) -> NeuralPrior:
    from safetensors.torch import load_file

    prior = NeuralPrior(**kwargs)
    prior.load_state_dict(load_file(str(path)))
    return prior.eval()


__all__ = ["NeuralPrior", "prior_condition", "train_prior", "load_prior"]
