"""The PFGM++ perturbation kernel and prior (Xu et al. 2023, "PFGM++: Unlocking the Potential of
Physics-Inspired Generative Models").

For data in R^N and augmented dimension D the perturbation kernel is

    p_r(x | y) = C(N, D, r) (|x - y|^2 + r^2)^(-(N + D) / 2),
    C(N, D, r) = Gamma((N + D) / 2) r^D / (pi^(N/2) Gamma(D / 2)),

a multivariate Student-t with nu = D degrees of freedom and scale sigma = r / sqrt(D). With the
alignment r = sigma sqrt(D) (the paper's transfer of EDM hyper-parameters) it tends to N(y, sigma^2 I) as D -> inf.

Sampling (as in the reference training code; docs/plugins/pfgmpp.md): the radius R = |x - y| satisfies
R^2 / r^2 ~ BetaPrime(N/2, D/2), i.e. R = r sqrt(Z / (1 - Z)) with Z ~ Beta(N/2, D/2), and the
direction u is uniform on the unit sphere. We draw Z through two independent Gamma variates,
Z / (1 - Z) = G_N / G_D with G_N ~ Gamma(N/2), G_D ~ Gamma(D/2), which avoids the cancellation in
1 - Z when Z is close to 1. All arithmetic is float64; per-sample generators give batch-invariant
draws (``diffusekit.random``).
"""

from __future__ import annotations

import math

import torch

from diffusekit.random import GeneratorLike, rand, randn

#: Marsaglia-Tsang proposals drawn per variate in one vectorised round (acceptance >= 0.95 each)
_ROUNDS = 16


def sample_gamma(shape_param: float, n: int, generator: GeneratorLike = None, device="cpu") -> torch.Tensor:
    """n draws of Gamma(shape_param, 1) in float64 (Marsaglia and Tsang 2000, with the
    ``Gamma(a) = Gamma(a + 1) U^(1/a)`` boost for a < 1).

    Proposals are drawn in vectorised rounds of ``_ROUNDS`` candidates per variate (the first
    accepted one is kept), so there is no Python loop per sample. A variate with no accepted
    candidate (probability < 1e-20) is redrawn in a further round.
    """
    if not shape_param > 0 or not math.isfinite(shape_param):
        raise ValueError(f"sample_gamma: shape must be a finite positive number, got {shape_param!r}")
    a = shape_param + 1.0 if shape_param < 1 else shape_param
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.zeros(n, dtype=torch.float64, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    while True:
        z = randn((n, _ROUNDS), generator, device, torch.float64)
        u = rand((n, _ROUNDS), generator, device, torch.float64)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        first = torch.argmax(ok.to(torch.int8), dim=1)  # first accepted candidate
        any_ok = ok.any(dim=1)
        val = d * v.gather(1, first[:, None])[:, 0]
        take = any_ok & ~done
        out = torch.where(take, val, out)
        done = done | any_ok
        if bool(done.all()):
            break
    if shape_param < 1:
        boost = rand((n,), generator, device, torch.float64)
        out = out * boost ** (1.0 / shape_param)
    return out


def radius_ratio(N: int, D: float, n: int, generator: GeneratorLike = None, device="cpu") -> torch.Tensor:
    """n draws of sqrt(Z / (1 - Z)), Z ~ Beta(N/2, D/2) (the Beta-prime radius over r), float64."""
    g_n = sample_gamma(N / 2.0, n, generator, device)
    g_d = sample_gamma(D / 2.0, n, generator, device)
    return torch.sqrt(g_n / g_d)


def sample_perturbation(shape: tuple[int, ...], sigma: torch.Tensor, D: float, generator: GeneratorLike = None,
                        device="cpu") -> torch.Tensor:
    """Perturbation n = R u with R = sigma sqrt(D) sqrt(Z / (1 - Z)), u uniform on S^(N-1).

    ``shape`` is (B, ...) with N = prod(shape[1:]); ``sigma`` is a scalar or (B,) tensor.
    Returns float64 of ``shape``. E|n|^2 = sigma^2 D N / (D - 2) for D > 2.
    """
    b = shape[0]
    N = math.prod(shape[1:])
    g = randn(shape, generator, device, torch.float64).reshape(b, N)
    u = g / g.norm(dim=1, keepdim=True).clamp_min(1e-300)
    ratio = radius_ratio(N, D, b, generator, device)
    sig = torch.as_tensor(sigma, dtype=torch.float64, device=device).expand(b)
    radius = sig * math.sqrt(D) * ratio
    return (radius[:, None] * u).reshape(shape)


def kernel_log_prob(n: torch.Tensor, sigma: torch.Tensor | float, D: float) -> torch.Tensor:
    """log p_r(y + n | y) with r = sigma sqrt(D), summed over all but the batch dimension (float64).

    log C(N, D, r) - (N + D)/2 log(|n|^2 + r^2) with C = Gamma((N+D)/2) r^D / (pi^(N/2) Gamma(D/2)).
    For D = inf this is the Gaussian log N(n; 0, sigma^2 I).
    """
    n = n.to(torch.float64)
    N = n[0].numel()
    sq = n.reshape(n.shape[0], -1).pow(2).sum(1)
    sig = torch.as_tensor(sigma, dtype=torch.float64, device=n.device)
    if math.isinf(D):
        return -0.5 * sq / sig ** 2 - N * torch.log(sig) - 0.5 * N * math.log(2 * math.pi)
    log_r = torch.log(sig) + 0.5 * math.log(D)
    log_c = math.lgamma((N + D) / 2) - math.lgamma(D / 2) - 0.5 * N * math.log(math.pi) + D * log_r
    # (|n|^2 + r^2)^(-(N+D)/2) computed as r^-(N+D) (1 + |n|^2 / r^2)^(-(N+D)/2) for large D
    return log_c - (N + D) * log_r - 0.5 * (N + D) * torch.log1p(sq * torch.exp(-2 * log_r))
