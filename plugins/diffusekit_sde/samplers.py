"""Reverse-SDE samplers over a precomputed plan: ``euler-maruyama``, ``reverse-diffusion``
and ``ancestral`` (Song et al. 2021, section 4 and appendix; update rules in
:mod:`.predictors`). The probability-flow ODE sampler lives in :mod:`.ode`, the
predictor-corrector sampler in :mod:`.pc`.

Time grid: ``steps + 1`` times from t_max to the process's sampling end t_min (``schedule``,
uniform by default). NFE = ``steps``. Final step: with ``denoise_final`` (default) the last
update returns its noise-free mean (the paper's ``noise_removal``), otherwise it adds noise
like every other step; neither costs an extra network evaluation.
"""

from __future__ import annotations

from pydantic import Field

from diffusekit.process import SDE, AdditiveGaussian, EndpointConditioned
from diffusekit.sampler import Plan, SamplerConfig, StepSampler, per_component
from diffusekit.state import batch_size

from .discretization import Discretization, time_grid
from .ode import ODEConfig, ProbabilityFlowODE, pf_ode_velocity
from .predictors import PREDICTORS, AncestralVariance, Predictor


class ReverseSDEConfig(SamplerConfig):
    steps: int = Field(1000, ge=1, le=100_000, description="number of predictor steps (= NFE)")
    schedule: str = Field("uniform", description="time grid (registered schedule name)")
    denoise_final: bool = Field(True, description="last step returns its noise-free mean")
    discretization: Discretization = Field(
        "transition", description="'transition': exact Gaussian step (DDPM / SMLD form); 'euler': f dt, g sqrt(dt)")


class AncestralConfig(ReverseSDEConfig):
    variance: AncestralVariance = Field(
        "auto", description="noise std: 'transition' G (DDPM), 'posterior' c_next G / c (SMLD); auto = process's")


class _PredictorSampler(StepSampler):
    """A stand-alone predictor run over the whole grid.

    The update assumes x_t = a x0 + c eps (b = 0), so processes with a condition endpoint are
    refused at construction. On a Product process each key takes its own component's update
    from one joint network call."""

    Config = ReverseSDEConfig
    requires = (AdditiveGaussian, SDE)
    excludes = (EndpointConditioned,)
    supports_product = True
    stochastic = True
    predictor_name = ""

    def predictor(self) -> Predictor:
        cfg = self.config
        return PREDICTORS[self.predictor_name](cfg.discretization,
                                               cfg.variance if isinstance(cfg, AncestralConfig) else "auto")

    def final_step_deterministic(self) -> bool:
        return self.config.denoise_final

    def build_plan(self, process) -> Plan:
        t = time_grid(process, self.config.steps, self.config.schedule)
        return Plan(t, self.predictor().coefficients(process, t))

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        t = plan.t[i].expand(batch_size(x))
        pred = denoiser(x, t, cond)
        last = i == plan.num_steps - 1
        noise = not (last and self.config.denoise_final)
        rule = self._rule

        def update(proc, xk, score, plan_k):
            return rule.update(xk, i, plan_k.coef, t, score, proc, cond, generator, noise)[0]

        return per_component(denoiser.process, update, x, pred.score, plan=plan), carry, pred

    @property
    def _rule(self) -> Predictor:
        rule = self.__dict__.get("_rule_obj")
        if rule is None:
            rule = self.__dict__["_rule_obj"] = self.predictor()
        return rule


class EulerMaruyama(_PredictorSampler):
    """Euler-Maruyama on the reverse SDE: x_m = x - (f - g^2 s) |dt|; x = x_m + g sqrt(|dt|) z."""

    predictor_name = "euler-maruyama"
    requires = (SDE,)


class ReverseDiffusion(_PredictorSampler):
    """Reverse diffusion predictor: x_m = (2 - r) x + G^2 s; x = x_m + G z (DDPM / SMLD form)."""

    predictor_name = "reverse-diffusion"


class Ancestral(_PredictorSampler):
    """Ancestral sampling: x_m = (x + G^2 s) / r; VP adds sqrt(beta_i) z, VE the posterior std."""

    Config = AncestralConfig
    predictor_name = "ancestral"
    requires = (AdditiveGaussian,)


__all__ = ["EulerMaruyama", "ReverseDiffusion", "Ancestral", "ProbabilityFlowODE", "ODEConfig", "pf_ode_velocity"]
