"""Shared by the per-step overhead tables of benchmarks/solvers.py and benchmarks/flow.py."""

from __future__ import annotations

import time

import torch

SHAPE = (64, 4, 8, 8)


class Zero(torch.nn.Module):
    """A free network (zeros like x): what is timed is the sampler's own per-step work."""

    def forward(self, x, t, cond=None):
        return torch.zeros_like(x)


def per_nfe_us(fn, nfe: int, repeats: int) -> float:
    """Microseconds per network evaluation: min over ``repeats`` runs of ``fn`` (after one warm-up),
    the least disturbed run on a shared machine."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts) / nfe * 1e6
