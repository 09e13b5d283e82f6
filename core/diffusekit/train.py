"""Training loop: AdamW, linear warm-up, gradient clipping, EMA, tqdm, periodic checkpoints
(safetensors + JSON state, RNG included) with exact resume, and DDP under ``torchrun``."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import datastats, distributed
from . import state as st
from .config import check_number
from .errors import ConfigError, DiffusekitError, NonFiniteError, WriteError
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
    g = out.groups
    if g is not None and (not torch.is_tensor(g) or g.shape != (n,) or g.is_floating_point() or g.is_complex()):
        what = f"a {type(g).__name__}" if not torch.is_tensor(g) else f"a {g.dtype} tensor of shape {tuple(g.shape)}"
        raise ConfigError(f"data.groups must be None or an integer tensor of shape ({n},), one group per example; "
                          f"got {what}", loc="data.groups")
    return out


def group_pools(groups: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """``(pool_of, pools)`` for :func:`batch_indices`, computed once per run: ``pools[j]`` the
    indices (ascending) of the examples of the j-th distinct group, ``pool_of[i]`` the pool of
    example i. None without groups."""
    if groups is None:
        return None
    _, pool_of = torch.unique(groups, return_inverse=True)
    return pool_of, [torch.nonzero(pool_of == j).flatten() for j in range(int(pool_of.max()) + 1)]


def batch_indices(n_data: int, pools, size: int, generator: torch.Generator) -> torch.Tensor:
    """The example indices of one training batch, drawn with replacement: uniformly from all
    ``n_data`` examples, or with ``pools`` (:func:`group_pools`) from the group of one
    uniformly drawn example (so every example is seen as often as without groups)."""
    if pools is None:
        return torch.randint(n_data, (size,), generator=generator)
    pool_of, members = pools
    pool = members[int(pool_of[int(torch.randint(n_data, (1,), generator=generator))])]
    return pool[torch.randint(len(pool), (size,), generator=generator)]


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


#: ``out_dir/checkpoint/step-00001200/``: one directory per kept checkpoint
STEP_DIR = "step-{:08d}"
MANIFEST = "manifest.json"


def data_fingerprint(example: Example) -> dict[str, Any]:
    """What resume compares to know it trains on the same data: rows, leaf shapes and a sha256
    of every tensor of the data and the condition."""
    from .files import tensors_sha256

    tensors = st.flatten(example.x, "x")
    if example.cond is not None and st.is_state(example.cond):
        tensors.update(st.flatten(example.cond, "cond"))
    if example.groups is not None:
        tensors["groups"] = example.groups
    return {"rows": st.batch_size(example.x), "shapes": {k: list(v.shape) for k, v in sorted(tensors.items())},
            "sha256": tensors_sha256(tensors)}


def _all_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating tensors holding NaN / Inf (one host sync for all of them)."""
    names = [k for k, v in tensors.items() if v.is_floating_point() and v.numel()]
    if not names:
        return []
    flags = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).tolist()
    return [k for k, ok in zip(names, flags) if not ok]


def _checkpoints(root: Path) -> list[Path]:
    """Kept checkpoint directories, newest first."""
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit():
            found.append((int(p.name[5:]), p))
    return [p for _, p in sorted(found, reverse=True)]


def _verify_checkpoint(path: Path) -> str | None:
    """None when ``path`` is a complete checkpoint whose files match its manifest, else why not."""
    from .files import sha256_file

    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest.json (incomplete write)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest.json ({exc})"
    for name, sha in manifest.get("files", {}).items():
        f = path / name
        if not f.exists():
            return f"{name} is missing"
        if sha256_file(f) != sha:
            return f"{name} does not match its sha256 (damaged)"
    return None


def _save_checkpoint(root: Path, step: int, pipe, opt, ema: EMA | None, gens, losses, rank: int, world: int,
                     fingerprint: dict, train_args: dict, keep: int) -> None:
    """Write ``root/step-XXXXXXXX`` atomically: every file goes into a hidden directory with a
    manifest of sha256 hashes written last, which is then renamed into place; the oldest
    checkpoints beyond ``keep`` are removed afterwards. Non-finite weights or optimizer state
    are never written (NonFiniteError names the last good checkpoint)."""
    import shutil

    from safetensors.torch import save_file

    from .files import atomic_write_json, fsync_dir, fsync_file, sha256_file
    from .io import state_tensors

    final = root / STEP_DIR.format(step)
    tmp = root / f".tmp-{final.name}"
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    failed: list[str] = []
    if distributed.is_main():
        tensors = {f"model.{k}": v for k, v in state_tensors(pipe).items()}
        if ema is not None:
            tensors.update({f"ema.{k}": v.cpu().contiguous() for k, v in ema.shadow.items()})
        osd = opt.state_dict()
        for idx, ost in osd["state"].items():
            for key, val in ost.items():
                if torch.is_tensor(val):
                    tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
        failed = _all_finite(tensors)
        meta = {"step": step, "param_groups": osd["param_groups"],
                "optim_scalars": {str(i): {k: v for k, v in ost.items() if not torch.is_tensor(v)}
                                  for i, ost in osd["state"].items()},
                "losses": losses, "world_size": world, "pipeline": pipe.config, "data": fingerprint,
                "train": train_args}
    if distributed.failed_ranks(bool(failed)):
        kept = _checkpoints(root)
        last = f"the last good checkpoint is {kept[0]}" if kept else "no checkpoint was written before"
        raise NonFiniteError(
            f"the weights or optimizer state became NaN/Inf before the checkpoint at step {step} "
            f"({', '.join(failed[:4]) or 'on another rank'}); it was not written and {last}. Lower lr, raise "
            "warmup or check the data, then resume", step=step)
    if distributed.is_main():
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    distributed.barrier()
    try:
        rng_name = f"rng_rank{rank}.safetensors"
        save_file(_rng_tensors(gens), str(tmp / rng_name))
        fsync_file(tmp / rng_name)
        distributed.barrier()
        if distributed.is_main():
            save_file(tensors, str(tmp / "state.safetensors"))
            (tmp / "state.json").write_text(json.dumps(meta, default=str))
            for name in ("state.safetensors", "state.json"):
                fsync_file(tmp / name)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            atomic_write_json(tmp / MANIFEST, {"format": 1, "step": step, "files": files})
            if final.exists():  # the same step again (a resumed run): swap, never a moment without it
                old = root / f".old-{final.name}"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            fsync_dir(root)
            for stale in _checkpoints(root)[max(keep, 1):]:
                shutil.rmtree(stale, ignore_errors=True)
    except BaseException as exc:
        if distributed.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, DiffusekitError):
            raise WriteError(f"could not write the checkpoint {final} ({exc}); the earlier checkpoints are "
                             "unchanged. Free disk space, then resume") from exc
        raise
    distributed.barrier()


def _find_checkpoint(root: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that verifies, and why each newer one was skipped."""
    skipped = []
    for path in _checkpoints(root):
        why = _verify_checkpoint(path)
        if why is None:
            return path, skipped
        skipped.append(f"{path.name}: {why}")
    return None, skipped


def _check_resume(path: Path, meta: dict, pipe, fingerprint: dict, steps: int) -> int:
    from .io import config_differences, weights_config

    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"{path}/state.json: step {step!r} is not a step count", loc="resume")
    if step > steps:
        raise ConfigError(f"{path} is at step {step}, beyond steps={steps}; raise steps to continue the run",
                          loc="train.steps")
    diffs = config_differences(weights_config(meta.get("pipeline") or {}), weights_config(pipe.config))
    if diffs:
        raise ConfigError(f"cannot resume {path}: the pipeline differs from the checkpoint's "
                          f"({'; '.join(diffs[:6])}); resume with the same config, or train into a new out_dir",
                          loc="resume")
    data = meta.get("data")
    if data is not None and data != fingerprint:
        key = "rows" if data.get("rows") != fingerprint["rows"] else (
            "shapes" if data.get("shapes") != fingerprint["shapes"] else "sha256")
        what = "values" if key == "sha256" else key
        raise ConfigError(f"cannot resume {path}: the training data differs from the checkpoint's ({what}: saved "
                          f"{str(data.get(key))[:80]}, now {str(fingerprint[key])[:80]}); resume with the same data, "
                          "or train into a new out_dir", loc="resume")
    return step


def _module_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The ``pipe.model`` state dict stored under ``prefix`` ("model." or "ema.") in a
    checkpoint's tensors (the pipeline buffers, "model.buffer.*", are not module state)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix) and not k.startswith("model.buffer.")}


def _load_checkpoint(path: Path, pipe, opt, ema: EMA | None, gens, rank: int, fingerprint: dict,
                     steps: int) -> tuple[int, list[float]]:
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    step = _check_resume(path, meta, pipe, fingerprint, steps)
    tensors = load_file(str(path / "state.safetensors"))
    pipe.model.load_state_dict(_module_state(tensors, "model."))
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
    return step, list(meta.get("losses", []))


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint directory of a run (``state.json``, ``state.safetensors``, the
    RNG states and ``manifest.json``) whose files verify, or None."""
    return _find_checkpoint(Path(out_dir) / CHECKPOINT_DIR)[0]


def checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """A run's checkpoint directories, oldest first (not verified; see :func:`load_checkpoint_weights`)."""
    return _checkpoints(Path(out_dir) / CHECKPOINT_DIR)[::-1]


def load_checkpoint_weights(path: str | os.PathLike, pipe, ema: bool = True) -> int:
    """Load the weights of checkpoint ``path`` (a ``step-XXXXXXXX`` directory) into ``pipe``.

    ``ema=True`` loads the EMA weights, the ones a finished run saves, so intermediate
    checkpoints can be evaluated like the final model (learning curves); ``ema=False`` loads
    the raw training weights. The checkpoint's files are verified against its manifest and its
    pipeline config must match ``pipe``'s (apart from the sampler). Returns the step.
    """
    from safetensors.torch import load_file

    from .io import weights_config

    path = Path(path)
    problem = _verify_checkpoint(path)
    if problem is not None:
        raise ConfigError(f"checkpoint {path} does not verify: {problem}", loc="checkpoint")
    meta = json.loads((path / "state.json").read_text())
    if weights_config(meta.get("pipeline", {})) != weights_config(pipe.config):
        raise ConfigError(f"checkpoint {path} was written for another pipeline config; build the pipeline from "
                          "the run's config.json", loc="checkpoint")
    tensors = load_file(str(path / "state.safetensors"))
    prefix = "ema." if ema else "model."
    sub = _module_state(tensors, prefix)
    if ema and not sub:
        raise ConfigError(f"checkpoint {path} holds no EMA weights (the run had ema=None); pass ema=False",
                          loc="checkpoint")
    pipe.model.load_state_dict(sub)
    pipe.eval()
    return int(meta["step"])


def _resume_point(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start at step 0); refuses what would lose work."""
    from .io import CONFIG_FILE

    root = out_dir / CHECKPOINT_DIR
    found, skipped = _find_checkpoint(root)
    legacy = root / "state.json"
    if resume:
        if found is not None:
            if skipped:
                import warnings

                warnings.warn(f"resuming from {found}; skipped newer damaged checkpoints: {'; '.join(skipped)}",
                              stacklevel=3)
            return found
        if legacy.exists():  # the single-slot layout of earlier versions
            return root
        if skipped:
            raise ConfigError(f"no usable checkpoint in {root}: {'; '.join(skipped)}", loc="resume")
        if (out_dir / CONFIG_FILE).exists():
            raise ConfigError(f"{out_dir} holds a saved run but no checkpoint, so there is nothing to resume; drop "
                              "resume to train it again from step 0 (it will be overwritten), or use another "
                              "out_dir", loc="resume")
        if distributed.is_main():
            print(f"[train] no checkpoint in {out_dir}: starting at step 0", flush=True)
        return None
    if found is not None or legacy.exists():
        step = found.name if found is not None else "state.json"
        raise ConfigError(f"{out_dir} has checkpoints of an earlier run (newest: {step}); pass resume=True "
                          "(--resume) to continue it, or use another out_dir", loc="out_dir")
    return None


LR_DECAYS = ("none", "cosine")


def lr_at(step: int, steps: int, lr: float, warmup: int = 0, decay: str = "none") -> float:
    """The learning rate of (0-based) ``step`` out of ``steps``: a linear ramp over ``warmup``
    steps, then ``lr`` (``decay="none"``) or lr * (1 + cos(pi * u)) / 2 with u the fraction of
    the post-warm-up steps done (``decay="cosine"``)."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if decay == "cosine":
        u = (step - warmup) / max(1, steps - warmup)
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, u)))
    return lr


def train(pipe, data: Any, steps: int = 1000, batch_size: int = 256, lr: float = 2e-3,
          weight_decay: float = 0.0, warmup: int = 0, grad_clip: float | None = 1.0,
          ema: float | None = 0.999, seed: int = 0, out_dir: str | os.PathLike | None = None,
          checkpoint_every: int = 0, resume: bool = False, progress: bool = True,
          log_every: int = 0, device=None, stop_after: int | None = None,
          keep_checkpoints: int = 3, data_stats: bool = True, lr_decay: str = "none") -> TrainResult:
    """Train ``pipe`` on ``data``; returns a :class:`TrainResult`.

    Under ``torchrun`` (WORLD_SIZE > 1) the network is wrapped in DDP (gloo on CPU, NCCL on
    CUDA) and each rank draws ``batch_size // world_size`` samples per step. With ``ema`` the
    pipeline ends with the EMA weights. ``checkpoint_every`` writes ``out_dir/checkpoint/
    step-XXXXXXXX`` atomically and keeps the newest ``keep_checkpoints``; ``resume=True``
    continues exactly (same batches, noise and optimizer state) from the newest checkpoint that
    verifies, after checking that the pipeline config and the data are the ones it was written
    with. ``progress``: a bar on a terminal, else a line every 10 s. ``stop_after`` ends the run
    early after that many steps (used to test resumption). ``data_stats``: record the data's
    Gaussian statistics in ``pipe.buffers`` (:mod:`diffusekit.datastats`; unconditional real
    tensor data only), which samplers such as the solvers' ``teleport="auto"`` read.
    ``lr_decay``: ``"none"`` keeps ``lr`` after the warm-up; ``"cosine"`` lowers it after the
    warm-up along a half cosine to 0 at ``steps`` (:func:`lr_at`), so the last weights are those
    of a settled optimizer rather than one still taking full-size steps.
    """
    check_number("steps", steps, loc="train.steps", integer=True, low=1)
    check_number("batch_size", batch_size, loc="train.batch_size", integer=True, low=1)
    check_number("lr", lr, loc="train.lr", low=0, low_open=True)
    check_number("weight_decay", weight_decay, loc="train.weight_decay", low=0)
    check_number("warmup", warmup, loc="train.warmup", integer=True, low=0, fix="the number of steps over which lr ramps up from 0")
    check_number("grad_clip", grad_clip, loc="train.grad_clip", low=0, low_open=True, none_ok=True,
                  fix="the maximum gradient norm (None: no clipping)")
    check_number("ema", ema, loc="train.ema", low=0, high=1, high_open=True, none_ok=True,
                  fix="the EMA decay, e.g. 0.999 (None or 0: no EMA)")
    check_number("seed", seed, loc="train.seed", integer=True)
    if lr_decay not in LR_DECAYS:
        raise ConfigError(f"train.lr_decay={lr_decay!r} is not one of {', '.join(LR_DECAYS)}", loc="train.lr_decay")
    check_number("checkpoint_every", checkpoint_every, loc="train.checkpoint_every", integer=True, low=0, fix="0 writes no checkpoints")
    check_number("log_every", log_every, loc="train.log_every", integer=True, low=0)
    check_number("keep_checkpoints", keep_checkpoints, loc="train.keep_checkpoints", integer=True, low=1)
    check_number("stop_after", stop_after, loc="train.stop_after", integer=True, low=1, none_ok=True)
    if (checkpoint_every or resume) and out_dir is None:
        raise ConfigError("checkpointing / resume needs out_dir", loc="train.out_dir")
    if out_dir is not None and distributed.is_main():
        from .files import check_output_dir

        check_output_dir(out_dir, loc="train.out_dir")  # before any work: never lose a finished run
    world, rank = _distributed()
    if device is not None:
        pipe.to(device)
    device = pipe.device
    spec = data if isinstance(data, str) or (isinstance(data, dict) and not st.is_state(data)) else None
    example = as_example(data)
    if spec is not None:
        pipe.metadata["data"] = spec
    if pipe.sample_shape is None:
        pipe.sample_shape = st.shape_of(example.x)
    pipe.process.check_state(st.index(example.x, slice(0, 1)), pipe.sample_shape, loc="data")
    if data_stats and datastats.eligible(example.x, example.cond):
        datastats.record(pipe, example.x)
    if batch_size % world:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {world} processes", loc="train.batch_size")
    # Training draws its own randomness; the caller's global torch RNG is left as it was
    # (layers such as dropout draw from a forked global generator seeded by ``seed``).
    devices = [device.index or 0] if device.type == "cuda" else []
    args = {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "warmup": warmup, "grad_clip": grad_clip,
            "ema": ema, "seed": seed}
    if lr_decay != "none":  # older checkpoints (no key) stay comparable
        args["lr_decay"] = lr_decay
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + rank)
        return _train_loop(pipe, example, steps, batch_size // world, lr, weight_decay, warmup, grad_clip, ema,
                           seed, out_dir, checkpoint_every, resume, progress, log_every, device, stop_after,
                           world, rank, keep_checkpoints, args)


def _train_loop(pipe, example: Example, steps, local_bs, lr, weight_decay, warmup, grad_clip, ema, seed,
                out_dir, checkpoint_every, resume, progress, log_every, device, stop_after, world, rank,
                keep_checkpoints, train_args):
    from .progress import Progress

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
    root = Path(out_dir) / CHECKPOINT_DIR if out_dir is not None else None
    fingerprint = data_fingerprint(example) if (checkpoint_every or resume or stop_after) and root else {}
    start, losses = 0, []
    if root is not None:
        point = _resume_point(Path(out_dir), resume)
        if point is not None:
            start, losses = _load_checkpoint(point, pipe, opt, ema_tracker, gens, rank, fingerprint, steps)

    def checkpoint(at: int) -> None:
        _save_checkpoint(root, at, pipe, opt, ema_tracker, gens, losses, rank, world, fingerprint, train_args,
                         keep_checkpoints)

    bar = Progress(steps, "training", initial=start, enabled=bool(progress) and distributed.is_main())
    t0 = time.perf_counter()
    pipe.train()
    n_data = st.batch_size(example.x)
    pools = group_pools(example.groups)
    end = steps if stop_after is None else min(steps, start + stop_after)
    max_norm = grad_clip if grad_clip else float("inf")
    for step in range(start, end):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, train_args.get("lr_decay", "none"))
        batch = example.index(batch_indices(n_data, pools, local_bs, gens["data"]))
        x0, cond = batch.x, batch.cond
        if pools is not None:  # grouped data: trim the padding the group does not use
            x0, cond = pipe.process.compact(x0, cond)
        x0, cond = st.to(x0, device), st.to(cond, device)
        loss = pipe.loss(x0, cond, generator=gens["noise"], model=model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # the gradient norm (clipped when grad_clip is set) and the loss reach the host together
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        value, norm_value = torch.stack([loss.detach().float(), norm.detach().float().to(loss.device)]).tolist()
        if not math.isfinite(value) or not math.isfinite(norm_value):
            what = f"loss became {value}" if not math.isfinite(value) else f"gradient norm became {norm_value}"
            kept = _checkpoints(root) if root is not None else []
            last = f"; the last good checkpoint is {kept[0]}" if kept else ""
            raise NonFiniteError(f"training {what} at step {step}; the weights were not updated{last}. Lower lr, "
                                 "raise warmup or check the data", step=step)
        opt.step()
        if ema_tracker is not None:
            ema_tracker.update(pipe.model, step)
        losses.append(value)
        bar.update(1, loss=value)
        if log_every and distributed.is_main() and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.5f}", flush=True)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and root is not None:
            checkpoint(step + 1)
    bar.close()
    if stop_after is not None and end < steps:
        if root is not None and not (checkpoint_every and end % checkpoint_every == 0):
            checkpoint(end)
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
