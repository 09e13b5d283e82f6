"""Seeded, batch-invariant random draws.

``generator`` may be ``None``, one :class:`torch.Generator`, a list of generators (one per
sample) or a list of integer seeds. With one generator per sample, sample ``i`` depends only
on its own generator: it never changes with batch size or with the other samples.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator], Sequence[int]]


def as_generators(generator: GeneratorLike, n: int | None = None) -> None | torch.Generator | list[torch.Generator]:
    """Normalise a generator argument; integer seeds become CPU generators."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gens = []
    for g in generator:
        if isinstance(g, torch.Generator):
            gens.append(g)
        elif isinstance(g, int):
            gens.append(torch.Generator().manual_seed(g))
        else:
            raise TypeError(f"generator: expected torch.Generator or int seeds, got {type(g).__name__}")
    if n is not None and len(gens) != n:
        raise ValueError(
            f"generator: got {len(gens)} per-sample generators for a batch of {n}; "
            "pass one generator per sample or a single generator"
        )
    return gens


def _draw(fn, shape, generator, device, dtype, **kw):
    gen_device = generator.device if generator is not None else device
    out = fn(shape, generator=generator, device=gen_device, dtype=dtype, **kw)
    return out.to(device) if out.device != torch.device(device) else out


def randn(shape: Sequence[int], generator: GeneratorLike = None, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Standard normal tensor of ``shape`` (first dim = batch), batch-invariant per sample."""
    gens = as_generators(generator, shape[0] if not isinstance(generator, torch.Generator) and generator is not None else None)
    if isinstance(gens, list):
        return torch.stack([_draw(torch.randn, tuple(shape[1:]), g, device, dtype) for g in gens])
    return _draw(torch.randn, tuple(shape), gens, device, dtype)


def rand(shape: Sequence[int], generator: GeneratorLike = None, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) tensor, batch-invariant per sample."""
    gens = as_generators(generator, shape[0] if not isinstance(generator, torch.Generator) and generator is not None else None)
    if isinstance(gens, list):
        return torch.stack([_draw(torch.rand, tuple(shape[1:]), g, device, dtype) for g in gens])
    return _draw(torch.rand, tuple(shape), gens, device, dtype)


def randn_like(x, generator: GeneratorLike = None):
    """Standard normal draws shaped like ``x`` (a Tensor, or a dict state: leaves drawn in sorted
    key order, so per-sample generators stay batch-invariant)."""
    if not torch.is_tensor(x):
        from .state import leaf_list, unflatten

        return unflatten([randn_like(v, generator) for v in leaf_list(x)], x)
    if torch.is_complex(x):
        # Complex standard normal: variance 1/2 on the real and on the imaginary part.
        real_dtype = x.real.dtype
        z = randn((*x.shape, 2), generator, x.device, real_dtype) * (0.5 ** 0.5)
        return torch.complex(z[..., 0], z[..., 1])
    return randn(x.shape, generator, x.device, x.dtype)


def rand_like(x: torch.Tensor, generator: GeneratorLike = None) -> torch.Tensor:
    return rand(x.shape, generator, x.device, x.dtype)
