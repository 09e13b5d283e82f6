"""Example inputs for tracing and verification: ``(x_t, t, cond)`` at a given batch size.

``x_t`` is a state (a Tensor or a dict of Tensors, see :mod:`diffusekit.state`); ``cond`` is
None, a Tensor or a dict of Tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import torch

from diffusekit import network as dk_network
from diffusekit import state as st
from diffusekit.errors import ConfigError


def network_example(network, batch: int, seed: int = 0) -> tuple[Any, Any, Any] | None:
    """The network's declared ``example_inputs(batch)`` (:func:`diffusekit.network.network_example`)
    drawn under a fixed seed (global RNG untouched), padded to ``(x_t, t, cond)``; None when the
    network gives no example."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ex = dk_network.network_example(network, batch)
    if ex is None:
        return None
    ex = tuple(ex)
    if len(ex) == 2:
        ex = (*ex, None)
    return ex  # type: ignore[return-value]


def _standard_normal(shape: Any, batch: int, g: torch.Generator) -> Any:
    """A standard normal state of per-sample ``shape`` (a tuple, or a dict of those)."""
    if isinstance(shape, Mapping):
        return {k: _standard_normal(shape[k], batch, g) for k in sorted(shape)}
    return torch.randn((batch, *shape), generator=g)


def bare_network_example(network, batch: int, seed: int = 0) -> tuple[Any, Any, Any] | None:
    """Inputs for a network without a pipeline: its declared ``example_inputs(batch)``, else a
    standard normal state of its declared ``sample_shape``
    (:func:`diffusekit.network.network_sample_shape`) with t uniform in (0.05, 0.95); None
    when it declares neither."""
    ex = network_example(network, batch, seed)
    if ex is not None:
        return ex
    shape = dk_network.network_sample_shape(network)
    if shape is None:
        return None
    g = torch.Generator().manual_seed(seed)
    x = _standard_normal(shape, batch, g)
    return x, 0.05 + 0.9 * torch.rand(batch, generator=g), None


def _repeat(v: Any, batch: int) -> Any:
    """``v`` (a state or condition) tiled / truncated along the batch to ``batch`` rows."""
    if v is None:
        return None
    n = st.batch_size(v)
    reps = -(-batch // n)
    return st.index(st.concat([v] * reps), slice(0, batch))


def pipeline_example(pipe, batch: int, seed: int = 0, example: Sequence[Any] | None = None) -> tuple[Any, Any, Any]:
    """Inputs for one denoiser call of ``pipe``.

    Order of preference: a user ``example`` (tiled / truncated to ``batch``), the network's
    declared ``example_inputs(batch)``, then a draw of ``pipe.sample_shape`` (standard normal
    for a Tensor state, the process prior for a dict state) with times uniform in the process
    range.
    """
    if example is not None:
        ex = tuple(example) + (None,) * (3 - len(example))
        if st.batch_size(ex[0]) != batch:
            ex = tuple(_repeat(v, batch) for v in ex)
        return ex  # type: ignore[return-value]
    lo, hi = float(pipe.process.t_min), float(pipe.process.t_max)
    drawn = network_example(pipe.network, batch, seed)
    if drawn is not None:
        x, t, cond = drawn
    else:
        shape = pipe.sample_shape
        if shape is None:
            raise ConfigError("cannot build export inputs: the network declares no example_inputs(batch) "
                              "(diffusekit.network.Network) and the pipeline has no sample_shape; pass "
                              "example=(x_t, t, cond)", loc="example")
        g = torch.Generator().manual_seed(seed)
        if isinstance(shape, Mapping):
            x = pipe.process.prior(batch, shape, generator=g)
        else:
            x = torch.randn((batch, *shape), generator=g)
        t = lo + (hi - lo) * (0.05 + 0.9 * torch.rand(batch, generator=g))
        cond = None
    t = t.to(torch.float32)
    t = t.clamp(lo, hi)  # network examples use t in (0, 1); keep them inside the process's range
    return x, t, cond
