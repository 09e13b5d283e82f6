"""NELBO estimators for the masked process (nats per sequence).

NELBO(x) = int_0^1 w(t) E_{x_t ~ q(.|x)} [ sum_{i: x_t^i = mask} -log p(x^i | x_t) ] dt,
w(t) = -alpha'(t) / (1 - alpha(t))  (MDLM eq. 10, MD4 eq. 5; docs/plugins/masked.md).

For a network that ignores t the integral over t can be done in closed form: the mask set S
has probability (1 - alpha)^|S| alpha^(L - |S|) and int_0^1 w (1 - alpha)^n alpha^(L - n) dt =
B(n, L - n + 1) = 1 / (n C(L, n)), hence NELBO = sum_{S != {}} CE(S) / (|S| C(L, |S|)), the
any-order autoregressive loss (Zheng et al. 2024, "time-agnostic masked models").
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from diffusekit.random import GeneratorLike, rand


def _masked_nll(denoiser, x: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
    logp = denoiser(x_t, t, cond).logits.double()
    nll = -logp.gather(-1, x[..., None]).squeeze(-1)
    return torch.where(x_t == denoiser.process.mask_id, nll, torch.zeros_like(nll)).sum(dim=1)


def nelbo_time(denoiser, process, x: torch.Tensor, cond: Any = None, num_samples: int = 64,
               generator: GeneratorLike = None) -> torch.Tensor:
    """Monte Carlo over ``num_samples`` stratified times per sequence; shape (B,)."""
    b = x.shape[0]
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    total = torch.zeros(b, dtype=torch.float64, device=x.device)
    u0 = rand((b,), gen, x.device, torch.float64)
    for k in range(num_samples):
        u = torch.remainder(u0 + k / num_samples, 1.0)
        t = process.t_min + (1 - process.t_min) * u
        pert = process.perturb(x, t.float(), cond, gen)
        total += process.weight(t) * _masked_nll(denoiser, x, pert.x_t, t.float(), cond)
    return total * (1 - process.t_min) / num_samples


def nelbo_subsets(denoiser, process, x: torch.Tensor, cond: Any = None, batch_size: int = 4096) -> torch.Tensor:
    """Exact time-agnostic NELBO by enumerating all 2^L - 1 mask subsets; shape (B,)."""
    b, length = x.shape
    if length > 16:
        raise ValueError(f"method='subsets' enumerates 2^L subsets; L = {length} is too long (max 16), "
                         "use method='time'")
    subsets = [s for n in range(1, length + 1) for s in itertools.combinations(range(length), n)]
    masks = torch.zeros(len(subsets), length, dtype=torch.bool, device=x.device)
    for j, s in enumerate(subsets):
        masks[j, list(s)] = True
    sizes = masks.sum(1)
    coef = torch.tensor([1.0 / (int(n) * math.comb(length, int(n))) for n in sizes], dtype=torch.float64,
                        device=x.device)
    t_of_n = process.t_of_alpha(1 - sizes.double() / length).float()
    total = torch.zeros(b, dtype=torch.float64, device=x.device)
    per = max(1, batch_size // len(subsets))
    for start in range(0, b, per):
        xs = x[start:start + per]
        nb = xs.shape[0]
        rep = xs.repeat_interleave(len(subsets), dim=0)
        m = masks.repeat(nb, 1)
        x_t = torch.where(m, torch.full_like(rep, process.mask_id), rep)
        t = t_of_n.repeat(nb)
        c = None if cond is None else cond[start:start + per].repeat_interleave(len(subsets), dim=0)
        nll = _masked_nll(denoiser, rep, x_t, t, c).view(nb, len(subsets))
        total[start:start + nb] = (nll * coef).sum(1)
    return total
