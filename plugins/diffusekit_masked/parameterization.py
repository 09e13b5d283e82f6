"""``logits`` parameterization with the SUBS rules (MDLM, Sahoo et al. 2024, sec. 3.2) and the
continuous-time NELBO loss.

SUBS: (1) zero masking probability: the mask logit is -inf; (2) carry-over unmasking: an
unmasked position copies x_t (log p = 0 on x_t^i, -inf elsewhere). Masked positions get a
log-softmax over the data tokens. The prediction's ``logits`` are these log-probabilities,
shape (B, L, vocab_size + 1).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.errors import ShapeError
from diffusekit.parameterization import Parameterization, Prediction
from diffusekit.process import Absorbing, ForwardProcess
from diffusekit.random import rand


def subs_log_probs(raw: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Apply SUBS to raw network logits (B, L, V + 1) or (B, L, V); returns (B, L, V + 1)."""
    k = mask_id + 1
    if raw.shape[-1] == mask_id:  # the network predicts data tokens only: append the mask column
        raw = torch.cat([raw, raw.new_zeros(*raw.shape[:-1], 1)], dim=-1)
    if raw.shape[:2] != x_t.shape or raw.shape[-1] != k:
        raise ShapeError(f"network output: expected logits of shape {(*x_t.shape, k)} (or last dim {k - 1}), "
                         f"got {tuple(raw.shape)}; the network's vocab_size must equal the process's")
    is_mask_col = torch.arange(k, device=raw.device) == mask_id
    logp = torch.log_softmax(raw.masked_fill(is_mask_col, float("-inf")), dim=-1)
    carry = torch.nn.functional.one_hot(x_t, k).bool()
    copied = torch.zeros_like(logp).masked_fill(~carry, float("-inf"))
    return torch.where((x_t != mask_id)[..., None], copied, logp)


class LogitsConfig(ComponentConfig):
    time_agnostic: bool = Field(
        False, description="train with the equivalent masked-model loss E_n (1/n) sum_S CE "
                           "(n ~ U{1..L} masked tokens) instead of the time-weighted NELBO")


class Logits(Parameterization):
    """Token log-probabilities with SUBS; loss = continuous-time NELBO per token (nats).

    SUBS needs the absorbing state, so the process must be :class:`~diffusekit.process.Absorbing`."""

    Config = LogitsConfig
    requires = (Absorbing,)
    output = "logits"

    def check_output(self, raw, x_t) -> None:
        """Logits: one float vector per token, shape (*x_t.shape, V or V + 1) (the vocabulary
        size is checked against the process by :func:`subs_log_probs`)."""
        if not torch.is_tensor(raw) or raw.shape[:-1] != x_t.shape or not raw.is_floating_point():
            got = tuple(raw.shape) if torch.is_tensor(raw) else type(raw).__name__
            raise ShapeError(f"network output: expected float logits of shape {(*x_t.shape, 'V + 1')}, got {got}")

    def predict(self, network, process: ForwardProcess, x_t: Any, t: torch.Tensor, cond: Any = None,
                net_cond: Any = None) -> Prediction:
        raw = network(x_t, t, net_cond)
        return Prediction(process, x_t, t, cond, logits=subs_log_probs(raw, x_t, process.mask_id))

    def loss(self, denoiser, x0: torch.Tensor, cond: Any = None, generator=None) -> torch.Tensor:
        """NELBO / L (nats per token), MDLM eq. 10 / MD4 eq. 5:
        E_t [ -alpha'_t / (1 - alpha_t) * sum_{i masked} -log p(x0^i | x_t) ] / L.

        With ``time_agnostic``: E_{n ~ U{1..L}} E_{|S| = n} [(1/n) sum_{i in S} -log p(x0^i | x_S)],
        the same objective in expectation (docs/plugins/masked.md), network time alpha^{-1}(1 - n/L).
        """
        process = denoiser.process
        b, length = x0.shape
        if self.config.time_agnostic:
            u = rand((b,), generator, x0.device, torch.float64)
            n = torch.floor(u * length).long() + 1                              # U{1..L}
            scores = rand((b, length), generator, x0.device, torch.float64)
            rank = scores.argsort(dim=1).argsort(dim=1)                        # random order
            masked = rank < n[:, None]
            x_t = torch.where(masked, torch.full_like(x0, process.mask_id), x0)
            t = process.t_of_alpha(1 - n.double() / length).float()
            w = length / n.float()                                             # L / n
        else:
            t = process.sample_time(b, generator, x0.device)
            pert = process.perturb(x0, t, cond, generator)
            x_t, masked = pert.x_t, pert.extra["mask"]
            w = process.weight(t.double()).float()
        logp = denoiser(x_t, t, cond).logits
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)
        nll = torch.where(masked, nll, torch.zeros_like(nll))  # unmasked: exactly 0 by SUBS
        return (w * nll.sum(dim=1)).mean() / length
