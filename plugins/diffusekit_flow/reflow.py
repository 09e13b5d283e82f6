"""Reflow (Liu et al. 2022, "Flow Straight and Fast", Alg. 1): rectify a trained flow.

1. :func:`reflow_pairs`: draw noise z_i and integrate the trained flow's ODE from it,
   x_i = Phi(z_i), with a deterministic sampler. Row j uses its own generator seeded
   ``seed + j`` (the seed rule of every sampling run, ``diffusekit.distributed.SEED_RULE``: x_j
   is what ``dk.distributed.sample`` writes for sample j), so the pairs do not depend on the
   batch size or on how the work is split; ``start`` / ``n`` select rows of the one seeded
   sequence, e.g. ``r = dk.distributed.shard_range(n, rank, world)`` per ``torchrun`` rank.
2. Retrain on the coupling (x_i, z_i): the ``velocity`` parameterization with
   ``coupling="paired"`` reads z_i from the condition ``{"noise": z}`` that
   :func:`reflow_pairs` returns (:func:`reflow_pipeline` makes such a pipeline, initialised from
   the trained one, as in the paper's fine-tuning).
3. :func:`straightness`: S = int_0^1 E |(x_1 - x_0) - u(x_t, t)|^2 dt along the model's own
   ODE trajectories x_t from x_1 = z to x_0 = Phi(z) (Liu et al. 2022, eq. 6; 0 iff every
   trajectory is a straight line travelled at constant speed). Estimated with Euler on a
   uniform grid (left Riemann sum over the same steps); |.|^2 sums over data dimensions.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch

from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.state import Example


def _deterministic(pipe, sampler: Any):
    from diffusekit.api import create
    from diffusekit.sampler import Sampler

    s = pipe.sampler if sampler is None else (sampler if isinstance(sampler, Sampler) else create(
        "sampler", sampler, loc="sampler"))
    if s.stochastic:
        raise CompatibilityError(
            f"reflow pairs need a deterministic ODE map z -> x, but sampler {type(s).__name__} is stochastic; "
            "pass sampler={'name': 'flow-midpoint', 'steps': 50} (or another deterministic sampler)")
    return s


def reflow_pairs(pipe, n: int, seed: int = 0, start: int = 0, batch_size: int = 1000, sampler: Any = None,
                 progress: bool = False) -> Example:
    """``Example(x=samples, cond={"noise": z})``: rows ``start .. start + n - 1`` of the pair
    sequence seeded by ``seed`` (row j: noise and sample from a generator seeded ``seed + j``).
    ``sampler``: a deterministic sampler (default: the pipeline's)."""
    if n < 1 or batch_size < 1:
        raise ConfigError(f"n ({n}) and batch_size ({batch_size}) must be >= 1", loc="reflow_pairs.n")
    if pipe.sample_shape is None:
        raise ConfigError("the pipeline has no sample_shape; train it or pass sample_shape", loc="sample_shape")
    s = _deterministic(pipe, sampler)
    xs, zs = [], []
    rows = range(start, start + n)
    chunks = [rows[i:i + batch_size] for i in range(0, n, batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="reflow pairs", disable=None)
    for chunk in chunks:
        gens = [torch.Generator().manual_seed(seed + j) for j in chunk]
        z = pipe.process.prior(len(chunk), pipe.sample_shape, generator=gens, device=pipe.device)
        with torch.no_grad():
            x = pipe.sample(len(chunk), x_init=z, sampler=s)
        xs.append(x.detach())
        zs.append(z.detach())
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return Example(torch.cat(xs), {"noise": torch.cat(zs)})


def reflow_pipeline(pipe, copy_weights: bool = True):
    """A pipeline like ``pipe`` whose ``velocity`` parameterization trains on paired noise
    (``coupling="paired"``), starting from ``pipe``'s weights (``copy_weights``)."""
    from diffusekit.pipeline import Pipeline

    cfg = copy.deepcopy(pipe.config)
    par = cfg.get("parameterization")
    name = par if isinstance(par, str) else par["name"]
    if name != "velocity":
        raise CompatibilityError(f"reflow retrains a 'velocity' model; this pipeline's parameterization is "
                                 f"{name!r}. Build a Pipeline with parameterization='velocity'")
    cfg["parameterization"] = {**({} if isinstance(par, str) else par), "name": "velocity", "coupling": "paired"}
    out = Pipeline.from_config(cfg)
    if copy_weights:
        out.model.load_state_dict(pipe.model.state_dict())
    out.buffers = dict(pipe.buffers)
    return out


def straightness(pipe, n: int = 1000, steps: int = 100, seed: int = 0, t_start: Optional[float] = None,
                 noise: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Straightness S of ``pipe``'s flow (see the module docstring) on ``n`` trajectories
    (from ``noise`` if given, else seeded per sample), with ``steps`` Euler steps.

    Returns ``{"straightness": S, "per_dim": S / D, "steps": steps, "n": n}``."""
    from .samplers import FlowEuler
    from .velocity import velocity_of

    sampler = FlowEuler(steps=steps, t_start=t_start)
    if noise is None:
        gens = [torch.Generator().manual_seed(seed + j) for j in range(n)]
        noise = pipe.process.prior(n, pipe.sample_shape, generator=gens, device=pipe.device)
    vel: list[torch.Tensor] = []

    def collect(info):
        vel.append(velocity_of(info["prediction"]).detach())

    with torch.no_grad():
        x = pipe.sample(noise.shape[0], x_init=noise, sampler=sampler, callback=collect)
    grid = sampler.grid(pipe.process)
    disp = (noise - x) / float(grid[0] - grid[-1])
    dev = torch.stack([(disp - u).flatten(1).pow(2).sum(1) for u in vel])  # (steps, n)
    s = float(dev.mean())
    return {"straightness": s, "per_dim": s / noise[0].numel(), "steps": steps, "n": int(noise.shape[0])}
