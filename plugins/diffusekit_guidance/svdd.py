"""Soft value-based decoding (SVDD; Li et al. 2024, "Derivative-Free Guidance in Continuous and
Discrete Diffusion Models with Soft Value-Based Decoding", Algorithm 1, SVDD-PM).

Target: p(x0) exp(r(x0) / alpha). At each step every sample draws M candidates x_s^(m) from the
pretrained reverse kernel, scores them with the soft value v(x_s) ~= r(x0_hat(x_s)) (posterior
mean approximation, SVDD-PM) and keeps one with probability softmax(v / alpha) (alpha = 0:
argmax). The reward is a black box: it sees detached tensors under ``torch.no_grad`` and may
return numpy; no gradient is ever taken.

Batch layout: ``Pipeline.sample(n)`` with n = B * M holds B groups of M contiguous rows; after
each step the M rows of a group are all set to the selected candidate, so the sampler's next
(stochastic) step draws M fresh candidates from it. Every group ends with M identical rows:
take ``x[::M]`` (:meth:`SVDD.representatives`). Cost: the value step evaluates the denoiser on
all B M candidates at the next time; the kept candidates' predictions are exactly what the
sampler needs at its next step, so they are served from a cache (the sampler passes the same
state object back). NFE therefore equals ``steps`` (each call on a batch of B M rows), counted
honestly by the inner denoiser; a sampler that copies the state falls back to fresh calls.

Continuous processes use ``prediction.x0``; discrete processes with a ``logits`` prediction
decode x0_hat = argmax logits (for an :class:`~diffusekit.process.Absorbing` process only at the
masked positions, ``mask_id``, keeping the others).

Each ``Pipeline.sample`` call runs on a bound copy (:meth:`~diffusekit.guidance.Guidance.bind`)
holding the call's condition, step count, selection generator and the selected ``values``; the
object configured by the user is never changed.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from pydantic import Field

from diffusekit import state as st
from diffusekit.config import ComponentConfig
from diffusekit.denoiser import DenoiserWrapper, per_sample_time
from diffusekit.errors import CompatibilityError, ConfigError, ShapeError
from diffusekit.guidance import Guidance
from diffusekit.parameterization import Prediction
from diffusekit.process import Absorbing

from .resampling import gather_state, population_size


class SVDDConfig(ComponentConfig):
    particles: int = Field(4, ge=1, description="candidates M per sample (batch = samples x M)")
    temperature: float = Field(0.0, ge=0.0, description="alpha: 0 selects the best candidate, > 0 samples softmax(v/alpha)")
    seed: int = Field(0, description="seed of the selection generator (alpha > 0)")


def decode_x0(pred: Prediction, x: Any) -> Any:
    """Posterior-mean x0_hat (continuous) or argmax decode at masked positions (discrete)."""
    if "logits" in pred.kinds:
        best = pred.logits.argmax(-1)
        if isinstance(pred.process, Absorbing):
            return torch.where(x == pred.process.mask_id, best, x)
        return best
    return pred.x0


class SVDDDenoiser(DenoiserWrapper):
    """Serves the cached prediction of the selected candidates at the sampler's next call."""

    def __init__(self, inner):
        super().__init__(inner)
        self.cache: tuple[Any, Prediction] | None = None

    def __call__(self, x_t, t, cond=None) -> Prediction:
        if self.cache is not None and self.cache[0] is x_t:
            pred = self.cache[1]
            self.cache = None
            return pred
        self.cache = None
        return self.inner(x_t, t, cond)


def _gather_prediction(pred: Prediction, x_new: Any, flat: torch.Tensor) -> Prediction:
    vals = {k: gather_state(pred.get(k), flat) for k in pred.kinds}
    return Prediction(pred.process, x_new, pred.t.index_select(0, flat), pred.cond, **vals)


class SVDD(Guidance):
    """Derivative-free guidance by a black-box reward (soft value-based decoding)."""

    Config = SVDDConfig
    couples_batch = True  # particles of a batch interact
    #: per call (set on the bound copy): the reward of the selected candidate of each group
    values: Optional[torch.Tensor] = None
    _bound: bool = False
    _denoiser: Optional[SVDDDenoiser] = None
    _steps: Optional[int] = None
    _cond: Any = None
    _gen: Optional[torch.Generator] = None

    def __init__(self, reward: Optional[Callable[[Any], Any]] = None, **params: Any) -> None:
        super().__init__(**params)
        self.reward = reward

    def check_fit(self, fit) -> None:
        sampler = fit.sampler
        if sampler is None:
            return
        if not sampler.stochastic:
            raise CompatibilityError(
                f"svdd selects among candidates drawn by a stochastic sampler; {type(sampler).__name__} is "
                "deterministic (all candidates would coincide). Use e.g. euler-maruyama or an ancestral sampler")
        if sampler.caches_predictions:
            raise CompatibilityError(
                f"svdd replaces the state after each step, so {type(sampler).__name__}'s prediction cache "
                "would serve stale rows; pass cache=False to the sampler")

    def bound(self, cond: Any, fit) -> None:
        self._bound = True
        self._denoiser = None
        self._steps = fit.sampler.steps
        self._cond = cond
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self.values = None

    def wrap(self, denoiser, conditioner=None):
        if self.reward is None:
            raise ConfigError("svdd needs a reward: SVDD(reward=fn, ...) with fn(x0_batch) -> (N,) values",
                              loc="guidance.reward")
        wrapped = SVDDDenoiser(denoiser)
        if self._bound:  # the copy bound to this call serves the kept candidates' predictions
            self._denoiser = wrapped
        return wrapped

    def representatives(self, x: Any) -> Any:
        """One row per group of M identical rows."""
        m = self.config.particles
        return x[::m] if torch.is_tensor(x) else {k: v[::m] for k, v in x.items()}

    def _value(self, x0: Any, n: int, device) -> torch.Tensor:
        with torch.no_grad():
            x0 = x0.detach() if torch.is_tensor(x0) else {k: v.detach() for k, v in x0.items()}
            v = torch.as_tensor(self.reward(x0), dtype=torch.float64).to(device).reshape(-1)
        if v.shape[0] != n:
            raise ShapeError(f"svdd reward returned {v.shape[0]} values for {n} states; return one per row")
        return v

    def on_step(self, x: Any, info: dict[str, Any]) -> Any:
        n = st.batch_size(x)
        m = population_size(n, self.config.particles)
        if self._denoiser is None:
            raise ConfigError("svdd must be bound to a sampling call (Pipeline.sample binds and wraps it)",
                              loc="guidance")
        last = self._steps is not None and info["i"] == self._steps - 1
        pred = None
        with torch.no_grad():
            if last:
                x0 = x
            else:
                t = per_sample_time(info["t"], x)
                pred = self._denoiser.inner(x, t, self._cond)
                x0 = decode_x0(pred, x)
        v = self._value(x0, n, st.device_of(x)).reshape(-1, m)
        alpha = self.config.temperature
        if alpha > 0:
            u = torch.rand(v.shape, generator=self._gen, dtype=torch.float64).to(v.device)
            v_sel = v / alpha - torch.log(-torch.log(u.clamp_min(1e-300)))
        else:
            v_sel = v
        best = v_sel.argmax(1)
        groups = v.shape[0]
        flat = (best + m * torch.arange(groups, device=v.device))[:, None].expand(groups, m).reshape(-1)
        self.values = v.gather(1, best[:, None]).squeeze(1)
        x_new = gather_state(x, flat)
        if pred is not None:
            self._denoiser.cache = (x_new, _gather_prediction(pred, x_new, flat))
        return x_new
