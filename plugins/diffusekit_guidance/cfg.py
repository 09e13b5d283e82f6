"""Classifier-free guidance (CFG) and manifold-constrained CFG (CFG++).

CFG (Ho & Salimans 2022, eq. 6): eps_w = eps_u + w (eps_c - eps_u), i.e. the score of
p_t(x)^(1-w) p_t(x|y)^w. w = 1 is the conditional model, w = 0 the unconditional one. For
logits predictions (masked discrete models) the same mixture is applied to log-probabilities.

CFG++ (Chung et al. 2024, Algorithm 1): the denoised estimate is guided,
x0_lam = x0_u + lam (x0_c - x0_u), lam in [0, 1], but the DDIM step renoises with the
*unconditional* noise estimate: x_s = a_s x0_lam + c_s eps_u. The guided
:class:`~diffusekit.parameterization.Prediction` therefore carries ``x0 = x0_lam`` and
``eps = eps_u`` on purpose (not consistent with x_t) and says so (``Prediction.renoises``).
A sampler whose update re-noises with the prediction's (x0, eps) in that case declares
``renoise_eps = True``: every Gaussian solver of the solvers plugin does (their step writes
z_t = w z_s + sum_j d_j D_j and replaces z_s by a_s x0 + c_s eps, so with DDIM this is exactly
Algorithm 1 and with DPM-Solver++ / DEIS / UniPC the multistep generalisation); CFG++ refuses
other samplers in ``check_fit``.

Per-call state (the sampler's grid and renoise ratios for ``equivalent_w``) lives on the bound
copy that :meth:`~diffusekit.guidance.Guidance.bind` returns for each ``Pipeline.sample`` call,
so one guidance object may be shared by several pipelines.

Equivalence [derived]: for a DDIM step t -> s on x_t = a x0 + c eps that renoises with
k eps (k = c_s for eta = 0, sqrt(c_s^2 - sigma^2) otherwise), CFG++ with lam is exactly CFG with
w = lam / (1 - r), r = (k / a_s) / (c_t / a_t) (the sampler's ``renoise_ratio``). Hence ``equivalent_w``
chooses lam_i = w (1 - r_i) per step so that the trajectory equals CFG at w; with
``equivalent_w = 1`` CFG++ samples the conditional distribution (tested against an exact oracle).
For a multistep solver ``renoise_ratio`` gives r_i = 1 - G_i / A_i (G_i: the weight of the current
guidance direction in a CFG step, A_i: that of the current x0 in the CFG++ step), so the current
step's terms equal CFG at w; the history terms then hold lam-guided estimates.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field

from diffusekit.denoiser import DenoiserWrapper, per_sample_time
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.guidance import Guidance, cfg_mix
from diffusekit.parameterization import Prediction
from diffusekit.process import AdditiveGaussian, bcast
from diffusekit.config import ComponentConfig, validate_params

from .batching import conditional_pair


class CFGConfig(ComponentConfig):
    scale: float = Field(3.0, ge=0.0, description="guidance scale w (1 = conditional model, 0 = unconditional)")
    batched: bool = Field(True, description="one network call on a 2B batch (NFE 1) instead of two calls")


class _ScaleMixin:
    """A mutable ``scale`` attribute kept in sync with the (frozen) config."""

    @property
    def scale(self) -> float:
        return float(self.config.scale)

    @scale.setter
    def scale(self, value: float) -> None:
        self.config = validate_params(type(self.config), {**self.config.model_dump(), "scale": value},
                                      loc=f"{type(self).__name__}")  # the saved spec follows self.config


def _needs_null(fit, name: str) -> None:
    if fit.conditioner is None:
        raise CompatibilityError(
            f"guidance {name!r} needs a conditioner with a null condition; add e.g. "
            "conditioner={'name': 'label', 'num_classes': K} (trained with dropout > 0)")


class _PairDenoiser(DenoiserWrapper):
    """Shared part of the CFG-type wrappers: one (batched) conditional / unconditional pair per
    call; ``scale`` and ``batch_factor`` are what the ONNX exporter reads when folding."""

    batch_factor = 2

    def __init__(self, inner, conditioner, guidance):
        super().__init__(inner)
        self._conditioner = conditioner
        self.guidance = guidance

    @property
    def conditioner(self):
        """The conditioner whose null condition forms the unconditional half."""
        return self._conditioner

    @property
    def scale(self) -> float:
        return self.guidance.scale


class CFGDenoiser(_PairDenoiser):
    """eps_w = eps_u + w (eps_c - eps_u) from one batched call."""

    def __call__(self, x_t, t, cond=None) -> Prediction:
        t = per_sample_time(t, x_t)
        pair = conditional_pair(self.inner, self.conditioner, x_t, t, cond, self.guidance.config.batched)
        w = self.scale
        c, u = pair.cond, pair.uncond
        if "logits" in c.kinds:
            mixed = cfg_mix(u.logits, c.logits, w, logits=True)
            return Prediction(c.process, x_t, t, cond, logits=torch.log_softmax(mixed, -1))
        return Prediction(c.process, x_t, t, cond, eps=cfg_mix(u.eps, c.eps, w))


class CFG(_ScaleMixin, Guidance):
    """Classifier-free guidance, batched in one network call (Ho & Salimans 2022)."""

    Config = CFGConfig
    foldable_cfg = True

    def wrap(self, denoiser, conditioner=None):
        return CFGDenoiser(denoiser, conditioner, self)

    def check_fit(self, fit) -> None:
        _needs_null(fit, "cfg")


class CFGPPConfig(ComponentConfig):
    scale: float = Field(0.6, ge=0.0, le=1.0, description="CFG++ guidance scale lambda in [0, 1]")
    equivalent_w: Optional[float] = Field(
        None, ge=0.0, description="if set, lambda is chosen per step so a DDIM step equals CFG at this w")
    batched: bool = Field(True, description="one network call on a 2B batch (NFE 1)")


class CFGPPDenoiser(_PairDenoiser):
    """Prediction with x0 = x0_u + lam (x0_c - x0_u) and eps = eps_u (renoising estimate)."""

    def __call__(self, x_t, t, cond=None) -> Prediction:
        t = per_sample_time(t, x_t)
        pair = conditional_pair(self.inner, self.conditioner, x_t, t, cond, self.guidance.config.batched)
        c, u = pair.cond, pair.uncond
        lam = bcast(self.guidance.lam(t, c.process), x_t)
        pred = Prediction(c.process, x_t, t, cond, x0=u.x0 + lam * (c.x0 - u.x0), eps=u.eps)
        pred.renoises = True  # re-noise with eps_u, not with the state
        return pred


class CFGPlusPlus(_ScaleMixin, Guidance):
    """CFG++: guided x0, unconditional eps for renoising (needs a ``renoise_eps`` sampler)."""

    Config = CFGPPConfig
    requires = (AdditiveGaussian,)
    #: per call (set on the bound copy when ``equivalent_w`` is set): the sampler's time grid
    #: (steps + 1,) and the renoise ratios r_i with a trailing 0 (steps + 1,), float64
    _grid: Optional[torch.Tensor] = None
    _r: Optional[torch.Tensor] = None

    def wrap(self, denoiser, conditioner=None):
        return CFGPPDenoiser(denoiser, conditioner, self)

    def check_fit(self, fit) -> None:
        _needs_null(fit, "cfg++")
        sampler = fit.sampler
        if sampler is None:
            return
        if not sampler.renoise_eps:
            raise CompatibilityError(
                f"cfg++ renoises with the unconditional eps, which needs a sampler whose update re-noises "
                f"with the prediction's (x0, eps) (class attribute renoise_eps = True: ddim, dpm-solver++, "
                f"deis, unipc, dpm-solver); {type(sampler).__name__} does not declare it. Use 'cfg' with "
                f"this sampler instead")
        if self.config.equivalent_w is not None and sampler.renoise_ratio(fit.process) is None:
            raise CompatibilityError(
                f"cfg++ equivalent_w needs the sampler's per-step renoise ratios (Sampler.renoise_ratio); "
                f"{type(sampler).__name__} does not report them. Use a fixed scale instead")

    def bound(self, cond: Any, fit) -> None:
        if self.config.equivalent_w is None:
            return
        grid, r = fit.sampler.renoise_ratio(fit.process)
        self._grid = grid.to(torch.float64)
        self._r = torch.cat([r.to(torch.float64), r.new_zeros(1, dtype=torch.float64)])

    def lam(self, t: torch.Tensor, process) -> torch.Tensor:
        """Per-sample lambda: the constant scale, or w (1 - r) at this step of the grid."""
        w = self.config.equivalent_w
        if w is None:
            return torch.full_like(t, self.scale)
        if self._grid is None:
            raise ConfigError("cfg++ with equivalent_w must be bound to a sampling call (Pipeline.sample binds it "
                              "to the sampler's time grid)", loc="guidance.equivalent_w")
        grid = self._grid.to(t.device)
        i = (grid[None] - t.to(torch.float64)[:, None]).abs().argmin(1)  # step index, no host sync
        lam = w * (1 - self._r.to(t.device)[i])
        return lam.clamp(0.0, 1.0).to(t.dtype)
