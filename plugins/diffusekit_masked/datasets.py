"""Token datasets: a random first-order Markov chain (exact likelihood) and character-level
English from CPython's ``pydoc_data.topics``. Both return LongTensors (N, L)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig

_SPLIT_OFFSET = {"train": 0, "test": 1_000_003}


# ----------------------------------------------------------------------------- Markov chain
class MarkovChain:
    """x^1 ~ pi0, x^{i+1} | x^i ~ T[x^i]; initial and transition rows drawn from a Dirichlet
    (``concentration``) with a fixed ``seed``. Exact log_prob, entropy and joint table."""

    def __init__(self, vocab_size: int = 4, seq_len: int = 8, concentration: float = 0.5, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        gamma = torch.distributions.Gamma(torch.tensor(float(concentration)), torch.tensor(1.0))
        torch_state = torch.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        draws = gamma.sample((vocab_size + 1, vocab_size)).double().clamp_min(1e-12)
        torch.set_rng_state(torch_state)
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.initial = draws[0] / draws[0].sum()
        self.transition = draws[1:] / draws[1:].sum(1, keepdim=True)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        x = torch.empty(n, self.seq_len, dtype=torch.long)
        x[:, 0] = torch.multinomial(self.initial, n, replacement=True, generator=generator)
        for i in range(1, self.seq_len):
            x[:, i] = torch.multinomial(self.transition[x[:, i - 1]], 1, generator=generator).squeeze(1)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) in nats, shape (B,)."""
        lp = self.initial.log()[x[:, 0]]
        return lp + self.transition.log()[x[:, :-1], x[:, 1:]].sum(1)

    def entropy(self) -> float:
        """H(x^1..x^L) = H(pi0) + sum_i sum_a P(x^i = a) H(T[a]) (nats)."""
        h_rows = -(self.transition * self.transition.log()).sum(1)
        marg = self.initial
        total = float(-(marg * marg.log()).sum())
        for _ in range(1, self.seq_len):
            total += float(marg @ h_rows)
            marg = marg @ self.transition
        return total

    def joint(self) -> torch.Tensor:
        """The full table (V,) * L (small V^L only)."""
        from .oracle import all_sequences

        seqs = all_sequences(self.vocab_size, self.seq_len)
        return self.log_prob(seqs).exp().view(*([self.vocab_size] * self.seq_len))


class MarkovConfig(ComponentConfig):
    n: int = Field(50_000, ge=1, description="number of sequences")
    vocab_size: int = Field(4, ge=2, le=1024)
    seq_len: int = Field(8, ge=1, le=4096)
    concentration: float = Field(0.5, gt=0, description="Dirichlet concentration of the chain's rows")
    chain_seed: int = Field(0, description="seed of the chain itself (the 'language')")
    split: Literal["train", "test"] = "train"
    seed: int = 0


def markov(n: int = 50_000, vocab_size: int = 4, seq_len: int = 8, concentration: float = 0.5,
           chain_seed: int = 0, split: str = "train", seed: int = 0) -> torch.Tensor:
    """Sequences from :class:`MarkovChain` (``chain_seed``), sampled with ``seed`` + split."""
    chain = MarkovChain(vocab_size, seq_len, concentration, chain_seed)
    return chain.sample(n, torch.Generator().manual_seed(seed + _SPLIT_OFFSET[split]))


# ----------------------------------------------------------------------------- pydoc text
#: printable ASCII and newline; any other character maps to "?"
CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
_INDEX = {c: i for i, c in enumerate(CHARS)}


def encode(text: str) -> torch.Tensor:
    q = _INDEX["?"]
    return torch.tensor([_INDEX.get(c, q) for c in text], dtype=torch.long)


def decode(ids) -> str:
    return "".join(CHARS[int(i)] if 0 <= int(i) < len(CHARS) else "_" for i in ids)


def pydoc_text() -> str:
    """The CPython documentation topics shipped with Python, joined in sorted key order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


class PydocConfig(ComponentConfig):
    seq_len: int = Field(64, ge=2, le=4096, description="characters per sequence")
    split: Literal["train", "test"] = "train"
    test_fraction: float = Field(0.1, gt=0, lt=1, description="the last fraction of the text is the test set")
    stride: int | None = Field(None, ge=1, description="train chunk stride (default seq_len // 2); test: seq_len")


def pydoc(seq_len: int = 64, split: str = "train", test_fraction: float = 0.1, stride: int | None = None) -> torch.Tensor:
    """Character-level chunks (vocab_size = len(CHARS) = 96) of ``pydoc_data.topics``.

    Contiguous split: the first (1 - test_fraction) of the characters for training (chunks
    every ``stride``), the rest for testing (non-overlapping), so no test text is seen.
    """
    ids = encode(pydoc_text())
    cut = int(math.floor(len(ids) * (1 - test_fraction)))
    part = ids[:cut] if split == "train" else ids[cut:]
    step = (stride or max(1, seq_len // 2)) if split == "train" else seq_len
    return part.unfold(0, seq_len, step).contiguous()


VOCAB_SIZE_PYDOC = len(CHARS)
