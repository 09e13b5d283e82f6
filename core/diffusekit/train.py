"""Training loop: AdamW, linear warm-up, gradient clipping, EMA, tqdm, periodic checkpoints
(safetensors + JSON state, RNG included) with exact resume, and DDP under ``torchrun``."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed
from . import state as st
from .errors import ConfigError, NonFiniteError
from .state import Example

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-50:]
        return float(sum(tail) / max(len(tail), 1))


def as_example(data: Any) -> Example:
    """Normalise training data to an :class:`~diffusekit.state.Example`.

    Accepted (one rule each, no key sniffing): an ``Example``; a state (a Tensor or a dict of
    Tensors: the data, no condition); a 2-tuple ``(x, cond)``; a registered dataset name or
    ``{"name": ...}`` config; a callable returning one of these."""
    if isinstance(data, (str, dict)) and not st.is_state(data):
        from .api import create

        data = create("dataset", data, loc="data")
    if callable(data) and not torch.is_tensor(data) and not isinstance(data, (dict, Example)):
        data = data()
    if isinstance(data, Example):
        out = data
    elif st.is_state(data):
        out = Example(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2 and st.is_state(data[0]):
        out = Example(data[0], data[1])
    else:
        raise ConfigError(
            f"data must be an Example(x, cond), a state (a Tensor (N, ...) or a dict of Tensors), an (x, cond) "
            f"tuple, or a dataset name; got {type(data).__name__}", loc="data")
    n = st.check_batch(out.x, "data.x")
    if out.cond is not None and st.is_state(out.cond) and st.check_batch(out.cond, "data.cond") != n:
        raise ConfigError(f"the condition has {st.batch_size(out.cond)} rows but the data {n}; give one "
                          "condition per example", loc="data.cond")
    return out


def _distributed() -> tuple[int, int]:
    """(world size, rank); starts the process group under torchrun (``dk.distributed.init``)."""
    if not distributed.init():
        return 1, 0
    return distributed.world_size(), distributed.rank()


class EMA:
    """Exponential moving average of parameters: p_ema <- d_k p_ema + (1 - d_k) p.

    With ``warmup`` the decay after update k (0-based) is d_k = min(d, (1 + k) / (10 + k)),
    so a short run is not dominated by the random initial weights (a 0.999 EMA would still
    hold 0.999^600 = 55% of them after 600 steps).
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def decay_at(self, step: int | None) -> float:
        if not self.warmup or step is None:
            return self.decay
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int | None = None) -> None:
        d = self.decay_at(step)
        for k, v in module.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def _rng_tensors(gens: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    out = {f"rng.{k}": g.get_state() for k, g in gens.items()}
    out["rng.torch"] = torch.get_rng_state()
    return out


def _save_checkpoint(path: Path, step: int, pipe, opt, ema: EMA | None, gens, losses, rank: int, world: int) -> None:
    from safetensors.torch import save_file

    from .io import state_tensors

    path.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        tensors = {f"model.{k}": v for k, v in state_tensors(pipe).items()}
        if ema is not None:
            tensors.update({f"ema.{k}": v.cpu().contiguous() for k, v in ema.shadow.items()})
        osd = opt.state_dict()
        for idx, st in osd["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
        save_file(tensors, str(path / "state.safetensors"))
        meta = {
            "step": step,
            "param_groups": osd["param_groups"],
            "optim_scalars": {str(i): {k: v for k, v in st.items() if not torch.is_tensor(v)}
                              for i, st in osd["state"].items()},
            "losses": losses,
            "world_size": world,
            "pipeline": pipe.config,
        }
        (path / "state.json").write_text(json.dumps(meta))
    save_file(_rng_tensors(gens), str(path / f"rng_rank{rank}.safetensors"))


def _load_checkpoint(path: Path, pipe, opt, ema: EMA | None, gens, rank: int) -> tuple[int, list[float]]:
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    sub = {k[len("model."):]: v for k, v in tensors.items()
           if k.startswith("model.") and not k.startswith("model.buffer.")}
    pipe.model.load_state_dict(sub)
    if ema is not None:
        for k in ema.shadow:
            ema.shadow[k].copy_(tensors[f"ema.{k}"])
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, scalars in meta.get("optim_scalars", {}).items():
        state.setdefault(int(idx), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng_path = path / f"rng_rank{rank}.safetensors"
    if rng_path.exists():
        rng = load_file(str(rng_path))
        for k, g in gens.items():
            g.set_state(rng[f"rng.{k}"])
        torch.set_rng_state(rng["rng.torch"])
    return int(meta["step"]), list(meta.get("losses", []))


def train(pipe, data: Any, steps: int = 1000, batch_size: int = 256, lr: float = 2e-3,
          weight_decay: float = 0.0, warmup: int = 0, grad_clip: float | None = 1.0,
          ema: float | None = 0.999, seed: int = 0, out_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 0, resume: bool = False, progress: bool = False,
          log_every: int = 0, device=None, stop_after: int | None = None) -> TrainResult:
    """Train ``pipe`` on ``data``; returns a :class:`TrainResult`.

    Under ``torchrun`` (WORLD_SIZE > 1) the network is wrapped in DDP (gloo on CPU, NCCL on
    CUDA) and each rank draws ``batch_size // world_size`` samples per step. With ``ema`` the
    pipeline ends with the EMA weights. ``checkpoint_every`` writes ``out_dir/checkpoint``;
    ``resume=True`` continues from it exactly (same batches, noise and optimizer state).
    ``stop_after`` ends the run early after that many steps (used to test resumption).
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}", loc="train.steps")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}", loc="train.batch_size")
    if (checkpoint_every or resume) and out_dir is None:
        raise ConfigError("checkpointing / resume needs out_dir", loc="train.out_dir")
    world, rank = _distributed()
    if device is not None:
        pipe.to(device)
    device = pipe.device
    example = as_example(data)
    if pipe.sample_shape is None:
        pipe.sample_shape = st.shape_of(example.x)
    pipe.process.check_state(st.index(example.x, slice(0, 1)), pipe.sample_shape, loc="data")
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {world} processes", loc="train.batch_size")
    # Training draws its own randomness; the caller's global torch RNG is left as it was
    # (layers such as dropout draw from a forked global generator seeded by ``seed``).
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + rank)
        return _train_loop(pipe, example, steps, batch_size // world, lr, weight_decay, warmup, grad_clip, ema,
                           seed, out_dir, checkpoint_every, resume, progress, log_every, device, stop_after,
                           world, rank)


def _train_loop(pipe, example: Example, steps, local_bs, lr, weight_decay, warmup, grad_clip, ema, seed,
                out_dir, checkpoint_every, resume, progress, log_every, device, stop_after, world, rank):
    gens = {"data": torch.Generator().manual_seed(seed * 7919 + rank),
            "noise": torch.Generator().manual_seed(seed * 104729 + 1 + rank)}
    params = [p for p in pipe.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the pipeline has no trainable parameters", loc="network")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    # one module: network, conditioner and learned guidance parts share EMA and DDP
    ema_tracker = EMA(pipe.model, ema) if ema else None
    model = pipe.model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(pipe.model)
    ckpt = Path(out_dir) / CHECKPOINT_DIR if out_dir is not None else None
    start, losses = 0, []
    if resume and ckpt is not None and (ckpt / "state.json").exists():
        start, losses = _load_checkpoint(ckpt, pipe, opt, ema_tracker, gens, rank)
    bar = None
    if progress and distributed.is_main():
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc="training", disable=None)
    t0 = time.perf_counter()
    pipe.train()
    n_data = st.batch_size(example.x)
    end = steps if stop_after is None else min(steps, start + stop_after)
    for step in range(start, end):
        scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
        for group in opt.param_groups:
            group["lr"] = lr * scale
        idx = torch.randint(n_data, (local_bs,), generator=gens["data"])
        batch = example.index(idx)
        x0 = st.to(batch.x, device)
        cond = st.to(batch.cond, device)
        loss = pipe.loss(x0, cond, generator=gens["noise"], model=model)
        if not torch.isfinite(loss):
            raise NonFiniteError(f"training loss became {loss.item()} at step {step}; lower lr or check data",
                                 step=step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if ema_tracker is not None:
            ema_tracker.update(pipe.model, step)
        value = float(loss.detach())
        losses.append(value)
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        if log_every and distributed.is_main() and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.5f}", flush=True)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and ckpt is not None:
            _save_checkpoint(ckpt, step + 1, pipe, opt, ema_tracker, gens, losses, rank, world)
    if bar is not None:
        bar.close()
    if stop_after is not None and end < steps:
        if ckpt is not None:
            _save_checkpoint(ckpt, end, pipe, opt, ema_tracker, gens, losses, rank, world)
        return TrainResult(end, losses, time.perf_counter() - t0, start)
    if ema_tracker is not None:
        ema_tracker.copy_to(pipe.model)
    pipe.eval()
    if out_dir is not None and distributed.is_main():
        pipe.save(out_dir)
    return TrainResult(steps, losses, time.perf_counter() - t0, start)




# ``dk.train(pipe, data, ...)`` calls :func:`train` although ``diffusekit.train`` is this module.
from . import callable_module as _callable_module  # noqa: E402

_callable_module(__name__, lambda: train)
