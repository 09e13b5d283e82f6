"""Example inputs for tracing and verification: ``(x_t, t, cond)`` at a given batch size."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from diffusekit.errors import ConfigError


def network_example(network, batch: int, seed: int = 0) -> tuple[Any, ...]:
    """``network.example_inputs(batch)`` drawn under a fixed seed (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ex = tuple(network.example_inputs(batch))
    if len(ex) == 2:
        ex = (*ex, None)
    return ex


def pipeline_example(pipe, batch: int, seed: int = 0, example: Sequence[Any] | None = None) -> tuple[Any, Any, Any]:
    """Inputs for one denoiser call of ``pipe``.

    Order of preference: a user ``example`` (its batch is re-drawn when ``batch`` differs
    only if it came from ``example_inputs``), the network's ``example_inputs(batch)``, then a
    standard normal ``x_t`` of ``pipe.sample_shape`` with times uniform in the process range.
    """
    if example is not None:
        ex = tuple(example) + (None,) * (3 - len(example))
        if ex[0].shape[0] != batch:
            reps = -(-batch // ex[0].shape[0])
            ex = tuple(None if v is None else torch.cat([v] * reps)[:batch] for v in ex)
        return ex  # type: ignore[return-value]
    net = pipe.network
    if hasattr(net, "example_inputs"):
        x, t, cond = network_example(net, batch, seed)
    else:
        shape = pipe.sample_shape
        if shape is None:
            raise ConfigError("cannot build export inputs: the network has no example_inputs(batch) and the "
                              "pipeline no sample_shape; pass example=(x_t, t, cond)", loc="example")
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((batch, *shape), generator=g)
        lo, hi = float(pipe.process.t_min), float(pipe.process.t_max)
        t = lo + (hi - lo) * (0.05 + 0.9 * torch.rand(batch, generator=g))
        cond = None
    t = t.to(torch.float32)
    lo, hi = float(pipe.process.t_min), float(pipe.process.t_max)
    t = t.clamp(lo, hi)  # network examples use t in (0, 1); keep them inside the process's range
    return x, t, cond
