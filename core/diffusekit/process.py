"""Forward processes and the capabilities samplers declare they need.

A *state* is a Tensor or a dict of Tensors; each process defines its own. Capabilities are
mixin classes; a sampler lists the ones it requires in ``requires`` and the Pipeline checks
``isinstance(process, capability)`` before sampling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import torch

from .config import Component
from .random import GeneratorLike, rand, randn_like

State = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def bcast(coef: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample coefficient of shape (B,) (or scalar) to broadcast against x."""
    if not torch.is_tensor(coef):
        return torch.as_tensor(coef, dtype=x.real.dtype if torch.is_complex(x) else x.dtype, device=x.device)
    if coef.ndim == 0:
        return coef
    return coef.reshape(coef.shape[0], *([1] * (x.ndim - 1)))


@dataclass
class Perturbed:
    """Result of :meth:`ForwardProcess.perturb`: the noisy state and what the loss needs."""

    x_t: State
    t: torch.Tensor
    noise: State | None = None
    x0: State | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ForwardProcess(Component, ABC):
    """Corrupts data ``x0`` into ``x_t`` over time ``t`` and provides the prior at ``t_max``.

    Time is in the process's own units (``t`` in [t_min, t_max]; sigma for EDM-style).
    """

    #: time range used by training and by default time grids
    t_min: float = 1e-3
    t_max: float = 1.0
    #: registry names of preferred samplers, best first (first registered one is the default)
    preferred_samplers: tuple[str, ...] = ()

    def sample_time(self, n: int, generator: GeneratorLike = None, device="cpu") -> torch.Tensor:
        """Training times, uniform on [t_min, t_max] by default. Shape (n,)."""
        u = rand((n,), generator, device, torch.float32)
        return self.t_min + (self.t_max - self.t_min) * u

    @abstractmethod
    def perturb(self, x0: State, t: torch.Tensor, cond: Any = None, generator: GeneratorLike = None) -> Perturbed:
        """Draw x_t ~ q(x_t | x0[, cond])."""

    @abstractmethod
    def prior(self, n: int, shape: tuple[int, ...], cond: Any = None, generator: GeneratorLike = None,
              device="cpu", dtype=torch.float32) -> State:
        """Draw n states from the prior at t_max (may depend on the condition)."""

    def check_state(self, x: State, shape: tuple[int, ...] | None = None, loc: str = "x") -> None:
        """Raise a clear error if ``x`` is not a valid state of this process."""
        from .errors import ShapeError

        if not torch.is_tensor(x):
            raise ShapeError(f"{loc}: expected a Tensor state for {type(self).__name__}, got {type(x).__name__}")
        if shape is not None and tuple(x.shape[1:]) != tuple(shape):
            raise ShapeError(
                f"{loc}: per-sample shape {tuple(x.shape[1:])} does not match the pipeline's "
                f"sample_shape {tuple(shape)}; reshape the data or set sample_shape"
            )


# ------------------------------------------------------------------------------ capabilities
class AffineGaussian(ABC):
    """x_t = a(t) x0 + b(t) y + c(t) eps, eps ~ N(0, I), y = condition endpoint (or 0).

    Implementers provide :meth:`coefficients` (and ideally closed-form derivatives).
    Everything else (log-SNR, its inverse, the perturbation) has generic defaults.
    """

    @abstractmethod
    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a(t), b(t), c(t)) with the shape of ``t``."""

    def coefficient_derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(a'(t), b'(t), c'(t)); default: central finite difference in float64."""
        t64 = t.to(torch.float64)
        h = 1e-6
        hi = [c.to(torch.float64) for c in self.coefficients(t64 + h)]
        lo = [c.to(torch.float64) for c in self.coefficients(t64 - h)]
        return tuple(((p - q) / (2 * h)).to(t.dtype) for p, q in zip(hi, lo))  # type: ignore[return-value]

    def endpoint(self, cond: Any, like: torch.Tensor) -> torch.Tensor | None:
        """The condition endpoint y (None when b(t) = 0, i.e. unconditional noise)."""
        return None

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda(t) = log(a(t)^2 / c(t)^2)."""
        a, _, c = self.coefficients(t)
        return 2 * (torch.log(a) - torch.log(c))

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`log_snr` (float64 bisection by default; override if closed form)."""
        lam64 = lam.to(torch.float64)
        lo = torch.full_like(lam64, float(self.t_min) * 1e-3)
        hi = torch.full_like(lam64, float(self.t_max))
        for _ in range(100):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > lam64  # log-SNR decreases with t
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return ((lo + hi) / 2).to(lam.dtype)

    def gaussian_perturb(self, x0: torch.Tensor, t: torch.Tensor, cond: Any = None,
                         generator: GeneratorLike = None) -> Perturbed:
        a, b, c = self.coefficients(t)
        eps = randn_like(x0, generator)
        x_t = bcast(a, x0) * x0 + bcast(c, x0) * eps
        y = self.endpoint(cond, x0)
        if y is not None:
            x_t = x_t + bcast(b, x0) * y
        return Perturbed(x_t=x_t, t=t, noise=eps, x0=x0)


class SDE(ABC):
    """dx = f(x, t) dt + g(t) dw. Reverse SDE: dx = [f - g^2 score] dt + g dw_bar;
    probability-flow ODE: dx/dt = f - 1/2 g^2 score (Song et al. 2021, eqs. 6 and 13)."""

    @abstractmethod
    def drift(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """f(x, t)."""

    @abstractmethod
    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t), shape of t."""

    def reverse_drift(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, cond: Any = None,
                      probability_flow: bool = False) -> torch.Tensor:
        g2 = bcast(self.diffusion(t) ** 2, x)
        return self.drift(x, t, cond) - (0.5 if probability_flow else 1.0) * g2 * score


class SigmaParameterized(ABC):
    """EDM-style processes whose noise level is sigma(t) (x = x0 + sigma n for the EDM form)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise level at time t."""

    @abstractmethod
    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma`."""


class Discrete(ABC):
    """Absorbing-state (masked) discrete processes over token ids."""

    vocab_size: int
    mask_id: int

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is still unmasked at time t."""


class LieGroup(ABC):
    """Processes on a matrix Lie group (e.g. SE(3)): exp / log maps and group product."""

    @abstractmethod
    def exp(self, xi: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def log(self, g: torch.Tensor) -> torch.Tensor: ...


class Product(ABC):
    """A joint process over a dict state, one component process per key (e.g. GDSS x / adj)."""

    @property
    @abstractmethod
    def components(self) -> Mapping[str, ForwardProcess]: ...


CAPABILITIES: dict[str, type] = {
    "AffineGaussian": AffineGaussian,
    "SDE": SDE,
    "SigmaParameterized": SigmaParameterized,
    "Discrete": Discrete,
    "LieGroup": LieGroup,
    "Product": Product,
}


def capabilities_of(process: Any) -> list[str]:
    return [name for name, cap in CAPABILITIES.items() if isinstance(process, cap)]


