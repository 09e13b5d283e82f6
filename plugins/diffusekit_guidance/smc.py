"""Feynman-Kac correctors with SMC resampling (Skreta et al. 2025, "Feynman-Kac Correctors in
Diffusion: Annealing, Guidance, and Product of Experts").

Target at every time: q_t proportional to prod_i p_i,t(x)^beta_i (annealing: one expert,
beta; product of experts: beta = (1, 1); CFG: p_t(x)^(1-w) p_t(x|y)^w). Particles follow the
reverse SDE whose score is S = sum_i beta_i s_i (s_i = grad log p_i,t). Writing the
Fokker-Planck equations of the p_i and of the simulated process [derived here, it matches the
paper's propositions], the weights that make the weighted particles distributed as q_t obey

  d log w = [ (sum_i beta_i - 1) div f + g(t)^2 / 2 (|S|^2 - sum_i beta_i |s_i|^2) ] d tau,

tau = reverse time. For linear drifts (VP, sub-VP, VE) div f does not depend on x and cancels
on normalisation; at t = T the weights start at (sum_i beta_i - 1) log p_T(x_T) (the prior).
Increments use the left point of each Euler-Maruyama step. Populations of ``group_size``
particles are resampled systematically when their ESS drops below ``ess_threshold * M``; the
final population is resampled once more (``final_resample``) so it is equally weighted.
Each ``Pipeline.sample`` call runs on a bound copy (:meth:`~diffusekit.guidance.Guidance.bind`)
holding that call's state: ``log_weights``, ``num_resampled`` and the resampling generator
(seeded with ``seed`` per call); the object configured by the user is never changed. Particles
interact, so results depend on the batch composition (by design).

``target="posterior"`` (inverse problems y = A(x0) + sigma_y n) is twisted SMC (Wu et al. 2023,
"Practical and Asymptotically Exact Conditional Sampling in Diffusion Models", TDS): the twist
h_t(x_t) = N(y; A(x0_hat(x_t)), sigma_y^2 + k r_t^2), r_t^2 = c^2 / (a^2 + c^2) (the DPS
approximation with the PiGDM variance inflation of Song et al. 2023 for data of scale ~1,
k = ``twist_inflation``; any twist keeps the method exact, a better one lowers the weight
variance), proposals from the
Euler-Maruyama kernel with score s + grad log h_t, and per-step weights
w_i = p(x_{i+1} | x_i) h_{i+1}(x_{i+1}) / (r(x_{i+1} | x_i) h_i(x_i)); for Gaussian kernels of
variance g^2 |dt| whose means differ by delta = g^2 |dt| grad log h_t,
log p/r = -(2 (x_{i+1} - mu_r) . delta + |delta|^2) / (2 g^2 |dt|). The last twist is the exact
likelihood N(y; A(x_N), sigma_y^2). h_{i+1}(x_{i+1}) becomes known at the next network call, so
the resampling of step i happens one step later on whole (x_i, x_{i+1}) paths (valid: it uses
only weights of the past).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.denoiser import Denoiser, DenoiserWrapper, per_sample_time
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.guidance import Guidance
from diffusekit.parameterization import Prediction
from diffusekit.process import SDE, AdditiveGaussian, PriorDensity, bcast, has_capability

from .batching import conditional_pair
from .resampling import gather_state, population_size, systematic_resample


class SMCConfig(ComponentConfig):
    target: Literal["cfg", "anneal", "product", "posterior"] = Field(
        "cfg", description="cfg: p^(1-w) p(.|y)^w; anneal: p^beta; product: (p_1 p_2)^beta; posterior: p(x|y)")
    scale: float = Field(1.0, description="w for cfg, beta for anneal and product")
    ess_threshold: float = Field(0.5, ge=0.0, le=1.0, description="resample when ESS < threshold * particles")
    group_size: Optional[int] = Field(None, ge=1, description="particles per population (None: the whole batch)")
    final_resample: bool = Field(True, description="resample after the last step (equal final weights)")
    seed: int = Field(0, description="seed of the resampling generator")
    batched: bool = Field(True, description="cfg target: one network call on a 2B batch")
    noise: float = Field(0.05, gt=0.0, description="posterior target: measurement noise std sigma_y")
    twist_inflation: float = Field(
        1.0, ge=0.0, description="posterior target: twist variance sigma_y^2 + this * c^2 / (a^2 + c^2) (0: DPS twist)")


def _sq(v: torch.Tensor) -> torch.Tensor:
    return (v * v).flatten(1).sum(1)


class FKDenoiser(DenoiserWrapper):
    """Returns eps = -c S and the per-sample weight rate ``fk_rate`` = g^2/2 (|S|^2 - sum beta |s|^2)."""

    def __init__(self, inner, conditioner, guidance: "SMC", expert: Optional[Denoiser] = None):
        super().__init__(inner)
        self._conditioner = conditioner
        self.guidance = guidance
        self.expert = expert

    @property
    def conditioner(self):
        """The conditioner whose null condition the cfg target uses."""
        return self._conditioner

    @property
    def nfe(self) -> int:
        return self.inner.nfe + (self.expert.nfe if self.expert is not None else 0)

    def reset_nfe(self) -> None:
        self.inner.reset_nfe()
        if self.expert is not None:
            self.expert.reset_nfe()

    def __call__(self, x_t, t, cond=None) -> Prediction:
        cfg = self.guidance.config
        t = per_sample_time(t, x_t)
        beta = cfg.scale
        if cfg.target == "posterior":
            return self._twisted(x_t, t, cond)
        if cfg.target == "cfg":
            pair = conditional_pair(self.inner, self.conditioner, x_t, t, cond, cfg.batched)
            preds, betas = [pair.cond, pair.uncond], [beta, 1.0 - beta]
        elif cfg.target == "anneal":
            preds, betas = [self.inner(x_t, t, cond)], [beta]
        else:
            preds, betas = [self.inner(x_t, t, cond), self.expert(x_t, t, cond)], [beta, beta]
        process = preds[0].process
        scores = [p.score for p in preds]
        S = sum(b * s for b, s in zip(betas, scores))
        g2 = process.diffusion(t).to(x_t.dtype) ** 2
        rate = 0.5 * g2 * (_sq(S) - sum(b * _sq(s) for b, s in zip(betas, scores)))
        c = bcast(process.coefficients(t)[2], x_t)
        return Prediction(process, x_t, t, cond, eps=-c * S, fk_rate=rate)

    def _twisted(self, x_t, t, cond) -> Prediction:
        g = self.guidance
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            pred = self.inner(x_in, t, cond)
            a, _, c = pred.process.coefficients(t)
            var = g.config.noise ** 2 + g.config.twist_inflation * c * c / (a * a + c * c)
            log_h = g.log_likelihood(pred.x0, var)
            (grad,) = torch.autograd.grad(log_h.sum(), x_in)
        c = bcast(pred.process.coefficients(t)[2], x_t)
        eps = pred.eps.detach() - c * grad
        return Prediction(pred.process, x_t, t, cond, eps=eps, log_twist=log_h.detach(), twist_score=grad)


class SMC(Guidance):
    """Feynman-Kac corrector weights + SMC resampling for annealed / product / CFG targets."""

    Config = SMCConfig
    requires = (AdditiveGaussian, SDE)
    couples_batch = True  # particles of a batch interact
    #: per call (set on the bound copy): log-weights of the particles after the last step
    log_weights: Optional[torch.Tensor] = None
    #: per call: number of populations resampled so far (a device tensor)
    num_resampled: Optional[torch.Tensor] = None
    _steps: Optional[int] = None
    _final_deterministic: bool = False
    _gen: Optional[torch.Generator] = None
    _pending: Optional[torch.Tensor] = None

    def __init__(self, expert: Any = None, operator: Any = None, measurement: Any = None, **params: Any) -> None:
        super().__init__(**params)
        self.expert = expert
        self.operator = operator
        self.measurement = None if measurement is None else torch.as_tensor(measurement)

    @property
    def betas_sum(self) -> float:
        cfg = self.config
        return {"cfg": 1.0, "anneal": cfg.scale, "product": 2 * cfg.scale, "posterior": 1.0}[cfg.target]

    def log_likelihood(self, x0: torch.Tensor, var: torch.Tensor | float | None = None) -> torch.Tensor:
        """log N(y; A(x0), var I) up to a particle-independent constant (var: sigma_y^2 by default)."""
        y = self.measurement.to(x0.device, x0.dtype)
        r = (y - self.operator(x0)).flatten(1)
        var = self.config.noise ** 2 if var is None else var
        return -(r * r).sum(1) / (2 * var)

    def check_fit(self, fit) -> None:
        cfg = self.config
        sampler = fit.sampler
        if sampler is not None and not sampler.stochastic:
            raise CompatibilityError(
                f"smc weights are derived for the reverse SDE; sampler {type(sampler).__name__} is not "
                "stochastic. Use e.g. sampler={'name': 'euler-maruyama', 'steps': 500}")
        if cfg.target == "cfg" and fit.conditioner is None:
            raise CompatibilityError("smc target='cfg' needs a conditioner with a null condition")
        if cfg.target == "product" and self.expert is None:
            raise ConfigError("smc target='product' needs a second expert: SMC(expert=network_or_denoiser, ...)",
                              loc="guidance.expert")
        if abs(self.betas_sum - 1.0) > 0 and not has_capability(fit.process, PriorDensity):
            raise CompatibilityError(f"smc target {cfg.target!r} reweights the prior and needs "
                                     f"{type(fit.process).__name__}.prior_logp")
        if cfg.target == "posterior":
            from diffusekit.plugins import get_registry

            em = get_registry().get("sampler", "euler-maruyama").obj
            if sampler is not None and not isinstance(sampler, em):
                raise CompatibilityError("smc target='posterior' computes Euler-Maruyama kernel ratios; use "
                                         "sampler={'name': 'euler-maruyama', ...}")
            if self.operator is None or self.measurement is None:
                raise ConfigError("smc target='posterior' needs SMC(operator=A, measurement=y, ...)",
                                  loc="guidance.operator")

    def bound(self, cond: Any, fit) -> None:
        self._steps = fit.sampler.steps
        self._final_deterministic = fit.sampler.final_step_deterministic()
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self.log_weights = None
        self.num_resampled = None
        self._pending = None

    def wrap(self, denoiser, conditioner=None):
        expert = self.expert
        if expert is not None and not isinstance(expert, (Denoiser, DenoiserWrapper)):
            expert = Denoiser(expert, denoiser.parameterization, denoiser.process)
        return FKDenoiser(denoiser, conditioner, self, expert)

    def _generator(self) -> torch.Generator:
        if self._gen is None:
            raise ConfigError("smc must be bound to a sampling call (Pipeline.sample binds it)", loc="guidance")
        return self._gen

    def on_step(self, x: Any, info: dict[str, Any]) -> Any:
        if self.config.target == "posterior":
            return self._twisted_step(x, info)
        pred = info.get("prediction")
        if pred is None or "fk_rate" not in pred.kinds:
            raise CompatibilityError("smc needs the sampler to report the prediction of each step (one denoiser "
                                     "call per step at the step's start, e.g. euler-maruyama)")
        b = pred.t.shape[0]
        group = population_size(b, self.config.group_size)
        if info["i"] == 0 or self.log_weights is None:
            lw = torch.zeros(b, dtype=torch.float64, device=pred.t.device)
            if self.betas_sum != 1.0:
                lw = lw + (self.betas_sum - 1.0) * pred.process.prior_logp(pred.x_t).to(torch.float64)
            self.log_weights = lw
            self.num_resampled = torch.zeros((), dtype=torch.long, device=pred.t.device)
        dtau = (pred.t - info["t"]).abs().to(torch.float64)
        self.log_weights = self.log_weights + pred.get("fk_rate").to(torch.float64) * dtau
        last = self._steps is not None and info["i"] == self._steps - 1
        flat, self.log_weights, need = systematic_resample(
            self.log_weights, group, self.config.ess_threshold, self._generator(), force=last and self.config.final_resample)
        self.num_resampled = self.num_resampled + need.sum()
        return gather_state(x, flat)

    def _twisted_step(self, x: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        pred = info.get("prediction")
        if pred is None or "log_twist" not in pred.kinds:
            raise CompatibilityError("smc target='posterior' needs each step's prediction (euler-maruyama)")
        b = pred.t.shape[0]
        group = population_size(b, self.config.group_size)
        i = info["i"]
        log_h = pred.get("log_twist").to(torch.float64)
        if i == 0 or self.log_weights is None:
            self.log_weights = torch.zeros(b, dtype=torch.float64, device=x.device)
            self.num_resampled = torch.zeros((), dtype=torch.long, device=x.device)
            pending = torch.zeros_like(self.log_weights)
        else:
            pending = self._pending + log_h  # completes w_{i-1} with h_i(x_i)
        # resample whole paths by the weights of the past (w_{i-1}); x holds x_{i+1}
        lw = self.log_weights + pending
        flat, self.log_weights, need = systematic_resample(lw, group, self.config.ess_threshold, self._generator())
        self.num_resampled = self.num_resampled + need.sum()
        # start w_i = p/r(x_{i+1} | x_i) h_{i+1}(x_{i+1}) / h_i(x_i) for the selected paths
        process = pred.process
        t_i, t_next = pred.t, info["t"]
        dt = (t_next - t_i).to(x.dtype)  # negative
        last = self._steps is not None and i == self._steps - 1
        if last and self._final_deterministic:  # the last Euler-Maruyama step adds no noise
            ratio = torch.zeros(b, dtype=torch.float64, device=x.device)
        else:
            g2 = bcast(process.diffusion(t_i).to(x.dtype) ** 2, x)
            mu_r = pred.x_t + process.reverse_drift(pred.x_t, t_i, pred.score, pred.cond) * bcast(dt, x)
            delta = g2 * bcast(-dt, x) * pred.get("twist_score")
            ratio = -(2 * ((x - mu_r) * delta).flatten(1).sum(1) + (delta * delta).flatten(1).sum(1)) / (
                2 * (g2 * bcast(-dt, x)).flatten(1)[:, 0])
            ratio = ratio.to(torch.float64)
        pending = (ratio - log_h).index_select(0, flat)
        x = gather_state(x, flat)
        if last:
            final = self.log_weights + pending + self.log_likelihood(x).to(torch.float64)
            flat, self.log_weights, need = systematic_resample(
                final, group, self.config.ess_threshold, self._generator(), force=self.config.final_resample)
            self.num_resampled = self.num_resampled + need.sum()
            return gather_state(x, flat)
        self._pending = pending
        return x
