"""Exact conditionals of a small discrete joint: a "network" for closed-form tests.

For a joint table P over V^L sequences, ``JointOracle(x_t)`` returns log p(x0^i = v | the
unmasked tokens of x_t) for every position (the Bayes-optimal SUBS denoiser, independent of
t), by summing P over the sequences consistent with x_t.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from diffusekit.network import Network


def all_sequences(vocab_size: int, length: int) -> torch.Tensor:
    """Every sequence in lexicographic order, shape (V^L, L); row j is the base-V digits of j."""
    return torch.tensor(list(itertools.product(range(vocab_size), repeat=length)), dtype=torch.long)


def sequence_index(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Row index of each sequence in :func:`all_sequences`, shape (B,)."""
    length = x.shape[1]
    powers = vocab_size ** torch.arange(length - 1, -1, -1, device=x.device)
    return (x * powers).sum(1)


def entropy(p: torch.Tensor) -> float:
    """Shannon entropy (nats) of a probability table."""
    p = p.double().flatten()
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum())


class JointOracle(Network):
    """Exact p(x0^i | x_t) for a joint ``probs`` of shape (V,) * L; output (B, L, V + 1) logits
    (log-probabilities, mask column -inf). ``time_conditioned = False``."""

    time_conditioned = False

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        v, length = probs.shape[0], probs.ndim
        if any(s != v for s in probs.shape):
            raise ValueError(f"joint table must have shape (V,)*L, got {tuple(probs.shape)}")
        self.vocab_size, self.length = v, length
        self.sample_shape = (length,)
        seqs = all_sequences(v, length)
        self.register_buffer("seqs", seqs)
        self.register_buffer("p", probs.double().flatten() / probs.double().sum())
        self.register_buffer("onehot", nn.functional.one_hot(seqs, v).double().reshape(len(seqs), length * v))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        mask_id = self.vocab_size
        consistent = ((x_t[:, None, :] == mask_id) | (x_t[:, None, :] == self.seqs[None])).all(-1)
        w = consistent.double() * self.p[None]                                  # (B, V^L)
        marg = (w @ self.onehot).view(x_t.shape[0], self.length, self.vocab_size)
        logp = torch.log(marg / marg.sum(-1, keepdim=True))
        return torch.cat([logp, torch.full_like(logp[..., :1], -math.inf)], -1)

    def example_inputs(self, batch: int = 4):
        """(x_t with about half the tokens masked, t, None)."""
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, self.vocab_size, (batch, self.length), generator=g)
        masked = torch.rand(batch, self.length, generator=g) < 0.5
        x = torch.where(masked, torch.full_like(x, self.vocab_size), x).to(self.seqs.device)
        return x, torch.full((batch,), 0.5, device=self.seqs.device), None
