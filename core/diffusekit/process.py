"""Forward processes and the capabilities samplers declare they need.

A *state* is a Tensor or a (nested) dict of Tensors (:mod:`diffusekit.state`); each process
defines its own. Capabilities are mixin classes that say what a sampler may rely on:

* :class:`AdditiveGaussian`: x_t = a(t) x0 + b(t) y + c(t) eps with Gaussian eps;
* :class:`EndpointConditioned`: an AdditiveGaussian process with b != 0 (x_t depends on a
  condition endpoint y);
* :class:`PinnedBridge`: an EndpointConditioned process with c = 0 at an end (a bridge pinned
  at the condition): samplers must start from the condition and never divide by c there;
* :class:`SDE`: drift and diffusion, hence the reverse SDE and probability-flow ODE;
* :class:`SigmaParameterized`: has a noise level sigma(t) (says nothing about the noise law);
* :class:`DenoisingODE`: the probability-flow ODE is dx/dsigma = (x - x0_hat) / sigma (EDM
  form), true for additive Gaussian noise and for PFGM++'s heavy-tailed kernels;
* :class:`Discrete` (categorical states) and :class:`Absorbing` (a mask state);
* :class:`LieGroup`: states on a matrix Lie group (exp / log / compose / geodesic);
* :class:`Product`: one component process per key of a dict state;
* :class:`Likelihood`: the process can evaluate log p(x) with a denoiser;
* :class:`PriorDensity`: the prior has a closed-form log density.

A sampler lists what it needs in ``requires`` (a tuple of capabilities; an inner tuple means
"any of these") and what it cannot handle in ``excludes``; :func:`diffusekit.fit.check_fit`
checks both. For a :class:`Product` process a capability holds when every component has it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from .config import Component
from .random import GeneratorLike, rand, randn_like
from .state import State, same_shape, shape_of


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
    @property
    def train_t_min(self) -> float:
        """Smallest time drawn for training (default: t_min; score SDEs train below their
        sampling end)."""
        return float(self.t_min)

    #: registry names of preferred samplers, best first (first registered one is the default)
    preferred_samplers: tuple[str, ...] = ()
    #: registry name of the parameterization used when a Pipeline is given none
    default_parameterization: Optional[str] = None

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

    def sample_cond(self, n: int, generator: GeneratorLike = None, device="cpu") -> Any:
        """A condition for ``n`` samples when the caller gives none (``Pipeline.sample`` with
        ``cond=None``), for processes whose states need one (GDSS: node flags drawn from the
        training graphs' node counts). Default None: sampling is unconditional."""
        return None

    def compact(self, x0: State, cond: Any = None) -> tuple[State, Any]:
        """``(x0, cond)`` of a training batch without the padding that none of its examples
        uses; ``dk.train`` calls it before the loss on every batch of grouped data
        (:attr:`diffusekit.state.Example.groups`, batches from one group of similar examples).
        The result must give the same per-example loss as the padded batch under a summed loss
        (padding carries no loss). Default: unchanged. GDSS trims the padded nodes beyond the
        batch's largest graph, which makes a grid-recipe step twice as fast."""
        return x0, cond

    def conformance_example(self, n: int, generator: GeneratorLike = None) -> Optional[tuple[State, Any]]:
        """``(x0, cond)``: a batch of ``n`` valid data states and their condition for the
        conformance kit and the fit-matrix test; None (default) means "draw x0 from the prior
        with a (3,) per-sample shape, no condition"."""
        return None

    def conformance_network(self, parameterization) -> "torch.nn.Module":
        """A tiny network producing outputs of the right structure for ``parameterization``
        on this process's states (fit-matrix test and conformance probes). Default: a fixed
        leaf-wise linear map of the state, which fits every Gaussian output (x0, eps, score,
        v, edm) and dict states; processes with other outputs (logits, poses) override it.

        For AdditiveGaussian processes with a Gaussian output (x0, eps, score, v) it is the
        exact denoiser of standard normal data, so every sampler sees a well-behaved field."""
        if isinstance(self, AdditiveGaussian) and not isinstance(self, Product) and \
                parameterization.output in ("x0", "eps", "score", "v"):
            return _StandardNormalOracle(self, parameterization.output)
        return _ProbeNetwork()

    #: whether states are dicts (a :class:`Product` or a process with a structured state)
    state_is_dict: bool = False

    def check_state(self, x: State, shape=None, loc: str = "x") -> None:
        """Raise a clear error if ``x`` is not a valid state of this process.

        ``shape`` is the pipeline's per-sample shape (:func:`diffusekit.state.shape_of` form)."""
        from .errors import ShapeError
        from .state import check_batch, is_state

        if self.state_is_dict:
            if torch.is_tensor(x) or not is_state(x):
                raise ShapeError(f"{loc}: {type(self).__name__} states are dicts of Tensors, got {type(x).__name__}")
        elif not torch.is_tensor(x):
            raise ShapeError(f"{loc}: expected a Tensor state for {type(self).__name__}, got {type(x).__name__}")
        check_batch(x, loc)
        if shape is not None and not same_shape(shape_of(x), shape):
            raise ShapeError(
                f"{loc}: per-sample shape {shape_of(x)} does not match the pipeline's "
                f"sample_shape {shape}; reshape the data or set sample_shape"
            )


class _ProbeNetwork(torch.nn.Module):
    """``network(x, t, cond) = w * x`` leaf-wise with one learnable scalar w (0.5 at start)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, cond=None):
        from .state import map_state

        return map_state(lambda v: v * self.w.to(v.real.dtype if v.is_complex() else v.dtype), x)


class _StandardNormalOracle(torch.nn.Module):
    """Exact prediction for x0 ~ N(0, I) under x_t = a x0 + b y + c eps: with z = x_t - b y,
    E[x0 | x_t] = a z / (a^2 + c^2), E[eps | x_t] = c z / (a^2 + c^2), score = -z / (a^2 + c^2)."""

    def __init__(self, process, output: str) -> None:
        super().__init__()
        self.process, self.output = process, output

    def forward(self, x, t, cond=None):
        a, b, c = (bcast(v.to(x.real.dtype if x.is_complex() else x.dtype), x)
                   for v in self.process.coefficients(t))
        y = self.process.endpoint(cond, x)
        z = x if y is None else x - b * y
        r2 = (a * a + c * c).clamp_min(1e-12)
        x0, eps = a * z / r2, c * z / r2
        if self.output == "x0":
            return x0
        if self.output == "eps":
            return eps
        if self.output == "score":
            return -z / r2
        return (a * eps - c * x0) / torch.sqrt(r2)


# ------------------------------------------------------------------------------ capabilities
class AdditiveGaussian(ABC):
    """x_t = a(t) x0 + b(t) y + c(t) eps with eps ~ N(0, I) and y the condition endpoint (or 0).

    Implementers provide :meth:`coefficients` (and ideally closed-form derivatives).
    Everything else (log-SNR, its inverse, the perturbation) has generic defaults. The noise
    law is Gaussian: samplers that re-noise (ancestral, DDIM with eta > 0, SDE solvers) and
    the x0 / eps / score / v conversions rely on it.
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

    def noise_like(self, x: torch.Tensor, generator: GeneratorLike = None, cond: Any = None) -> torch.Tensor:
        """A draw of eps shaped like ``x``: i.i.d. N(0, I) by default. Processes whose noise has
        structure override it (GDSS: symmetric, zero-diagonal adjacency noise masked by node
        flags); the perturbation and the stochastic sampler steps draw through it."""
        return randn_like(x, generator)

    def gaussian_perturb(self, x0: torch.Tensor, t: torch.Tensor, cond: Any = None,
                         generator: GeneratorLike = None) -> Perturbed:
        a, b, c = self.coefficients(t)
        eps = self.noise_like(x0, generator, cond)
        x_t = bcast(a, x0) * x0 + bcast(c, x0) * eps
        y = self.endpoint(cond, x0)
        if y is not None:
            x_t = x_t + bcast(b, x0) * y
        return Perturbed(x_t=x_t, t=t, noise=eps, x0=x0)


class EndpointConditioned(AdditiveGaussian):
    """An AdditiveGaussian process with b(t) != 0: x_t depends on a condition endpoint y
    (SGMSE's noisy spectrogram, a bridge's x1). Samplers whose update assumes
    x_t = a x0 + c eps (the reverse-SDE predictors) exclude it; solvers that work on
    z = x - b y accept it. :meth:`endpoint` must return y (never None) for a valid condition."""


class PinnedBridge(EndpointConditioned):
    """An AdditiveGaussian process with c = 0 at an end: a bridge pinned at the condition.

    At ``pinned_time`` (t_max by default) x_t equals the endpoint y exactly (a = 0, b = 1,
    c = 0), so sampling must start from the condition itself and a sampler must never divide
    by c (or take log c) there. Generic Gaussian solvers, whose grids start at t_max and
    convert predictions through eps = (x - a x0 - b y) / c, declare ``excludes = (PinnedBridge,)``;
    bridge samplers (posterior steps that only multiply by c) require it.
    """

    #: the time at which c(t) = 0 and x_t = y
    pinned_time: float = 1.0


class SDE(ABC):
    """dx = f(x, t) dt + g(t) dw. Reverse SDE: dx = [f - g^2 score] dt + g dw_bar;
    probability-flow ODE: dx/dt = f - 1/2 g^2 score (Song et al. 2021, eqs. 6 and 13)."""

    #: noise of the ancestral predictor: "transition" (DDPM: the forward step's std) or
    #: "posterior" (SMLD / VE: the std of q(x_{k+1} | x_k, x0))
    ancestral_variance: str = "transition"

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
    """Processes with a noise level sigma(t) and its inverse (EDM-style time = sigma).

    Having a noise level says nothing about the noise law: a heavy-tailed (PFGM++) or a
    rotation (IGSO(3)) process has one too. Gaussian solvers need :class:`AdditiveGaussian`
    (stochastic steps) or :class:`DenoisingODE` (deterministic steps) in addition.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise level at time t."""

    @abstractmethod
    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma`."""


class DenoisingODE(SigmaParameterized):
    """x = x0 + sigma(t) n whose probability-flow ODE is dx/dsigma = (x - E[x0 | x]) / sigma.

    Karras et al. 2022 (eq. 3 with s = 1) for Gaussian n; Xu et al. 2023 (PFGM++, with the
    alignment r = sigma sqrt(D)) for the heavy-tailed kernels. Deterministic solvers of this
    ODE (Euler, Heun, DDIM with eta = 0, DPM-Solver, UniPC, DEIS) only need the denoiser x0_hat,
    so they run on these processes; stochastic ones also need :class:`AdditiveGaussian`.
    """


class Discrete(ABC):
    """Categorical states: LongTensor ids in [0, vocab_size) (plus any extra state a subclass
    adds). ``alpha(t)`` is the probability that a token still holds its data value at t."""

    vocab_size: int

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is unchanged at time t."""


class Absorbing(Discrete):
    """A discrete process whose corrupted tokens jump to one absorbing id, ``mask_id``."""

    mask_id: int


class LieGroup(ABC):
    """States on a matrix Lie group G (e.g. SO(3), SE(3)) of shape (..., n, n).

    Tangent vectors (the Lie algebra in coordinates, ``algebra_dim`` numbers) have shape
    (..., algebra_dim). Every method is batched over the leading shape.
    """

    #: dimension of the Lie algebra (3 for SO(3), 6 for SE(3))
    algebra_dim: int

    @abstractmethod
    def exp(self, xi: torch.Tensor) -> torch.Tensor:
        """Exponential map: algebra coordinates (..., d) -> group elements (..., n, n)."""

    @abstractmethod
    def log(self, g: torch.Tensor) -> torch.Tensor:
        """Logarithm map (principal branch): group elements -> algebra coordinates."""

    @abstractmethod
    def hat(self, xi: torch.Tensor) -> torch.Tensor:
        """Coordinates (..., d) -> algebra matrix (..., n, n)."""

    @abstractmethod
    def vee(self, m: torch.Tensor) -> torch.Tensor:
        """Algebra matrix (..., n, n) -> coordinates (..., d); inverse of :meth:`hat`."""

    def compose(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Group product g h (matrix product by default)."""
        return g @ h

    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        """Group inverse (matrix inverse by default; override with a closed form)."""
        return torch.linalg.inv(g)

    def identity(self, shape: tuple[int, ...] = (), device="cpu", dtype=torch.float32) -> torch.Tensor:
        """The identity element with leading ``shape``."""
        zero = torch.zeros(*shape, self.algebra_dim, device=device, dtype=dtype)
        return self.exp(zero)

    def geodesic(self, g0: torch.Tensor, g1: torch.Tensor, s) -> torch.Tensor:
        """The point at fraction ``s`` of the geodesic from g0 to g1: g0 exp(s log(g0^-1 g1))."""
        xi = self.log(self.compose(self.inverse(g0), g1))
        s = torch.as_tensor(s, dtype=xi.dtype, device=xi.device)
        if s.ndim:
            s = s.reshape(*s.shape, *([1] * (xi.ndim - s.ndim)))
        return self.compose(g0, self.exp(s * xi))


class Product(ABC):
    """A joint process over a dict state, one component process per key (e.g. GDSS x / adj).

    A capability holds for a Product when it holds for every component; samplers and
    parameterizations that handle per-key states declare ``supports_product = True``.
    Predictions of a Product are dicts with one entry per key, converted per component.
    """

    @property
    @abstractmethod
    def components(self) -> Mapping[str, "ForwardProcess"]:
        """``{key: component process}`` in a fixed order."""


class PriorDensity(ABC):
    """The prior at t_max has a closed-form log density."""

    @abstractmethod
    def prior_logp(self, x: State) -> torch.Tensor:
        """log p_prior(x) per sample (nats), shape (B,)."""


class Likelihood(ABC):
    """The process evaluates per-sample log-likelihoods (nats) with a denoiser."""

    @abstractmethod
    def log_likelihood(self, denoiser, x: State, cond: Any = None, **options) -> torch.Tensor:
        """log p(x) per sample, shape (B,)."""


class ProductProcess(ForwardProcess, Product):
    """A ready Product: independent component processes sharing the time t.

    Subclasses define the ``components`` property (``{key: process}``); perturb, prior,
    sample_time, the per-key drift and the time range come from the components.
    """

    state_is_dict = True

    @property
    def t_min(self) -> float:  # type: ignore[override]
        return max(float(p.t_min) for p in self.components.values())

    @property
    def t_max(self) -> float:  # type: ignore[override]
        return min(float(p.t_max) for p in self.components.values())

    def sample_time(self, n: int, generator: GeneratorLike = None, device="cpu") -> torch.Tensor:
        u = rand((n,), generator, device, torch.float32)
        return self.t_min + (self.t_max - self.t_min) * u

    def perturb(self, x0, t, cond=None, generator=None) -> Perturbed:
        parts = {k: p.perturb(x0[k], t, cond, generator) for k, p in self.components.items()}
        return Perturbed(x_t={k: v.x_t for k, v in parts.items()}, t=t,
                         noise={k: v.noise for k, v in parts.items()}, x0=x0)

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        from .errors import ShapeError

        if not isinstance(shape, Mapping) or set(shape) != set(self.components):
            raise ShapeError(f"sample_shape: {type(self).__name__} needs one shape per key "
                             f"{sorted(self.components)}, got {shape!r}")
        return {k: p.prior(n, shape[k], cond=cond, generator=generator, device=device, dtype=dtype)
                for k, p in self.components.items()}

    def drift(self, x, t, cond=None):
        """Per-key drift (components that are SDEs)."""
        return {k: p.drift(x[k], t, cond) for k, p in self.components.items()}

    def check_state(self, x, shape=None, loc="x"):
        super().check_state(x, shape, loc)
        if set(x) != set(self.components):
            from .errors import ShapeError

            raise ShapeError(f"{loc}: keys {sorted(x)} do not match the components {sorted(self.components)}")


def has_capability(process: Any, cap) -> bool:
    """``isinstance`` for capabilities; a tuple means any of them; a Product has a capability
    when every component has it."""
    if isinstance(cap, tuple):
        return any(has_capability(process, c) for c in cap)
    if isinstance(process, cap):
        return True
    if isinstance(process, Product) and cap is not Product and cap is not ForwardProcess:
        comps = list(process.components.values())
        return bool(comps) and all(has_capability(p, cap) for p in comps)
    return False


def capability_name(cap) -> str:
    if isinstance(cap, tuple):
        return " or ".join(capability_name(c) for c in cap)
    return cap.__name__


CAPABILITIES: dict[str, type] = {
    "AdditiveGaussian": AdditiveGaussian,
    "EndpointConditioned": EndpointConditioned,
    "PinnedBridge": PinnedBridge,
    "SDE": SDE,
    "SigmaParameterized": SigmaParameterized,
    "DenoisingODE": DenoisingODE,
    "Discrete": Discrete,
    "Absorbing": Absorbing,
    "LieGroup": LieGroup,
    "Product": Product,
    "Likelihood": Likelihood,
    "PriorDensity": PriorDensity,
}


def capabilities_of(process: Any) -> list[str]:
    return [name for name, cap in CAPABILITIES.items() if has_capability(process, cap)]
