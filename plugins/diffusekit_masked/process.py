"""The absorbing-state (masked) forward process over token sequences (MDLM / MD4).

State: LongTensor (B, L) with ids in [0, vocab_size) for data tokens and ``mask_id =
vocab_size`` for the mask. q(x_t^i | x0^i) = alpha_t delta_{x0^i} + (1 - alpha_t) delta_mask,
independently per position (docs/plugins/masked.md). The prior at t = 1 is all-mask.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import ConfigError, ShapeError
from diffusekit.process import Absorbing, ForwardProcess, Likelihood, Perturbed
from diffusekit.random import GeneratorLike, rand

from .schedules import MaskSchedule


class MaskedConfig(ComponentConfig):
    vocab_size: int = Field(..., ge=1, le=10_000_000,
                            description="number of data tokens; the mask id is vocab_size")
    schedule: Literal["linear", "cosine", "polynomial", "log-linear"] = Field(
        "linear", description="alpha(t): linear 1-t, cosine cos(pi t/2), polynomial 1-t^w, log-linear 1-(1-eps)t")
    exponent: float = Field(1.0, gt=0, le=100, description="w of the polynomial schedule")
    eps: float = Field(1e-3, ge=0, lt=1, description="log-linear schedule: alpha(1) = eps (MDLM)")
    t_min: float = Field(1e-5, ge=0, lt=1, description="smallest training time")
    antithetic: bool = Field(True, description="stratified training times (u + i/B) mod 1 (MDLM)")


class _FixedLogits(torch.nn.Module):
    """``network(x, t) = logits`` of one fixed categorical per position (conformance probe)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.linspace(1.0, -1.0, vocab_size))

    def forward(self, x, t, cond=None):
        return self.logits.expand(*x.shape, -1)


class Masked(ForwardProcess, Absorbing, Likelihood):
    """Absorbing (masking) process; ``default_parameterization`` is ``logits`` (SUBS).

    Capabilities: :class:`~diffusekit.process.Absorbing` (``mask_id = vocab_size``) and
    :class:`~diffusekit.process.Likelihood` (the ELBO, :meth:`log_likelihood`)."""

    Config = MaskedConfig
    t_max = 1.0
    default_parameterization = "logits"
    preferred_samplers = ("first-hitting", "ancestral")

    def __init__(self, **params: Any):
        super().__init__(**params)
        c = self.config
        self.vocab_size = c.vocab_size
        self.mask_id = c.vocab_size
        self.num_tokens = c.vocab_size + 1
        self.t_min = c.t_min
        self.schedule = MaskSchedule(c.schedule, c.exponent, c.eps)

    # -- conformance ----------------------------------------------------------------------
    def conformance_example(self, n: int, generator=None):
        """``n`` random token sequences of length 6 (no condition)."""
        u = rand((n, 6), generator, "cpu", torch.float32)
        return (u * self.vocab_size).long().clamp_max(self.vocab_size - 1), None

    def conformance_network(self, parameterization) -> torch.nn.Module:
        """Fixed logits over the data tokens (a skewed categorical), for any sequence length."""
        return _FixedLogits(self.vocab_size)

    # -- schedule -------------------------------------------------------------------------
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.alpha(t)

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.dalpha(t)

    def t_of_alpha(self, a: torch.Tensor) -> torch.Tensor:
        return self.schedule.inverse(a)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """NELBO weight -alpha'(t) / (1 - alpha(t))."""
        return self.schedule.weight(t)

    # -- forward process --------------------------------------------------------------------
    def sample_time(self, n: int, generator: GeneratorLike = None, device="cpu") -> torch.Tensor:
        """Training times on [t_min, 1]; stratified ``(u + i/n) mod 1`` with one generator."""
        if self.config.antithetic and (generator is None or isinstance(generator, torch.Generator)):
            u0 = rand((1,), generator, device, torch.float32)
            u = torch.remainder(u0 + torch.arange(n, device=device, dtype=torch.float32) / n, 1.0)
        else:
            u = rand((n,), generator, device, torch.float32)
        return self.t_min + (1 - self.t_min) * u

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, cond: Any = None,
                generator: GeneratorLike = None) -> Perturbed:
        """Mask each token independently with probability 1 - alpha(t); ``extra['mask']``."""
        t = torch.as_tensor(t, device=x0.device)
        t = t.expand(x0.shape[0]) if t.ndim == 0 else t
        u = rand(x0.shape, generator, x0.device, torch.float64)
        masked = u < (1 - self.alpha(t.to(torch.float64)))[:, None]
        x_t = torch.where(masked, torch.full_like(x0, self.mask_id), x0)
        return Perturbed(x_t=x_t, t=t, noise=None, x0=x0, extra={"mask": masked})

    def prior(self, n: int, shape: tuple[int, ...], cond: Any = None, generator: GeneratorLike = None,
              device="cpu", dtype=torch.float32) -> torch.Tensor:
        """All-mask sequences of shape (n, *shape) (``dtype`` is ignored: states are long)."""
        return torch.full((n, *shape), self.mask_id, dtype=torch.long, device=device)

    def check_state(self, x: Any, shape: tuple[int, ...] | None = None, loc: str = "x") -> None:
        """States are integer tensors (B, L) with ids in [0, vocab_size] (vocab_size = mask)."""
        if not torch.is_tensor(x):
            raise ShapeError(f"{loc}: expected a LongTensor (B, L) of token ids, got {type(x).__name__}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ShapeError(f"{loc}: token ids must be an integer tensor, got dtype {x.dtype}; "
                             "convert with x.long()")
        if x.ndim != 2:
            raise ShapeError(f"{loc}: expected shape (batch, length), got {tuple(x.shape)}")
        super().check_state(x, shape, loc)
        if x.numel():
            lo, hi = int(x.min()), int(x.max())
            top = self.mask_id if loc not in ("x0", "data") else self.vocab_size - 1
            if lo < 0 or hi > top:
                raise ShapeError(
                    f"{loc}: token ids must lie in [0, {top}] (vocab_size={self.vocab_size}"
                    f"{', mask id ' + str(self.mask_id) + ' allowed' if top == self.mask_id else ', no mask tokens in data'}"
                    f"), got values in [{lo}, {hi}]; set vocab_size to the data's vocabulary")

    # -- likelihood ----------------------------------------------------------------------------
    def log_likelihood(self, denoiser, x: torch.Tensor, cond: Any = None, *, num_samples: int = 64,
                       method: Literal["time", "subsets"] = "time", generator: GeneratorLike = None,
                       batch_size: int = 4096) -> torch.Tensor:
        """ELBO = -NELBO in nats per sequence (a lower bound on log p(x)); shape (B,).

        ``method="time"``: Monte Carlo over ``num_samples`` stratified times of
        NELBO = int_0^1 -alpha'/(1 - alpha) E_q[sum_masked -log p(x0^i | x_t)] dt.
        ``method="subsets"``: the exact time-agnostic form (every mask subset S weighted by
        1 / (|S| C(L, |S|)), network time t = alpha^{-1}(1 - |S|/L)); 2^L evaluations per
        sequence, exact for a network that ignores time. Divide by L ln 2 for bits per token
        (:func:`bits_per_token`).
        """
        from .likelihood import nelbo_subsets, nelbo_time

        self.check_state(x, None, loc="x")
        with torch.no_grad():
            if method == "subsets":
                return -nelbo_subsets(denoiser, self, x, cond, batch_size=batch_size)
            if method != "time":
                raise ConfigError(f"method must be 'time' or 'subsets', got {method!r}", loc="log_likelihood.method")
            return -nelbo_time(denoiser, self, x, cond, num_samples, generator)


def bits_per_token(log_likelihood: torch.Tensor, length: int) -> torch.Tensor:
    """Convert per-sequence nats (log-likelihood or its bound) to bits per token (positive)."""
    return -log_likelihood / (length * math.log(2))
