"""Categorical sampling by an exponential race, in a selectable precision.

``argmax_i p_i / E_i`` with ``E_i ~ Exp(1)`` draws i with probability p_i (the Gumbel-max trick
in another form). MDLM draws ``E = eps - log(u + eps)`` with ``u ~ U[0, 1)`` and eps = 1e-10.
Because u lives on a grid of 2^-24 in float32 (2^-53 in float64), E is bounded:
``E_min = eps - log(1 - 2^-24 + eps)`` and ``E_max = eps - log(eps)``. A category with
``p_i / p_max < E_min / E_max`` can never win: 2.59e-9 in float32 and 9.3e-18 in float64
(Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked models and
exploit inaccurate categorical sampling"; docs/plugins/masked.md). In a many-step ancestral
update the stay-masked probability is p_max, so low-probability tokens become unreachable
in float32, which lowers the token entropy. Sample in float64 (the default everywhere here).
"""

from __future__ import annotations

from typing import Literal

import torch

from diffusekit.random import GeneratorLike, rand

Precision = Literal["float64", "float32"]
RACE_EPS = 1e-10


def dtype_of(precision: str) -> torch.dtype:
    return {"float64": torch.float64, "float32": torch.float32}[precision]


def race_times(u: torch.Tensor) -> torch.Tensor:
    """Exponential arrival times ``eps - log(u + eps)`` from uniforms (in u's dtype)."""
    return RACE_EPS - torch.log(u + RACE_EPS)


def sample_from_uniforms(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the winner of the race ``argmax probs / E(u)`` over the last dim.

    ``probs`` need not be normalised; both are used in ``u``'s dtype. No host sync.
    """
    return (probs.to(u.dtype) / race_times(u)).argmax(dim=-1)


def sample_categorical(probs: torch.Tensor, generator: GeneratorLike = None,
                       precision: Precision = "float64") -> torch.Tensor:
    """Draw one index per row of ``probs`` (shape (B, ..., K)); per-sample generators allowed.

    Uniforms come from :func:`diffusekit.random.rand` with the batch as first dimension, so
    with one generator per sample a draw never depends on the rest of the batch.
    """
    u = rand(probs.shape, generator, probs.device, dtype_of(precision))
    return sample_from_uniforms(probs, u)


def unreachable_threshold(precision: Precision = "float64") -> float:
    """Smallest ratio p_i / p_max that can still win the race: ``E_min / E_max``.

    Computed with the dtype's own arithmetic at the extreme uniforms of its grid
    (``torch.rand`` returns multiples of 2^-24 in float32 and 2^-53 in float64).
    """
    dt = dtype_of(precision)
    step = 2.0 ** (-24 if dt == torch.float32 else -53)
    hi = torch.tensor(1 - step, dtype=dt)
    lo = torch.tensor(0.0, dtype=dt)
    return float(race_times(hi) / race_times(lo))


def extreme_uniforms(k: int, favoured: int, precision: Precision = "float64") -> torch.Tensor:
    """Uniforms that give category ``favoured`` its best chance against all others (u = 1 - ulp
    for it, u = 0 for the rest): used to show which categories can win at all."""
    dt = dtype_of(precision)
    step = 2.0 ** (-24 if dt == torch.float32 else -53)
    u = torch.zeros(k, dtype=dt)
    u[favoured] = 1 - step
    return u
