"""Predictor-corrector sampling (Song et al. 2021, Algorithm 1 / sampling.py ``pc_sampler``).

At every grid time t_k: ``corrector_steps`` Langevin corrections at t_k, then one predictor
update t_k -> t_{k+1}. NFE = steps (corrector_steps + 1). Correctors (score s, z ~ N(0, I)):

* ``langevin`` (``LangevinCorrector``): eps = 2 alpha (snr |z| / |s|)^2,
  x <- x + eps s + sqrt(2 eps) z, with alpha = 1 - beta_k = r_k^2 for VP / sub-VP and 1 for VE
  (r from the step's exact transition). As in the reference code |z| and |s| are per-sample
  norms averaged over the batch (``norm="batch"``, default), so the step size is a constant
  across states and the Langevin chain keeps its target (noise draws stay per-sample, but
  the step size couples the samples of a batch). ``norm="sample"`` uses each sample's own
  norms: batch-invariant, but the step then depends on the state, which biases the
  stationary law in low dimension (fine for images, wrong for 2-D toys); ``ald`` is both
  batch-invariant and state-independent.
* ``ald`` (annealed Langevin, NCSN; the default): eps = 2 alpha (snr c(t_k))^2 with c the
  marginal std. For p_t dominated by noise |s| ~ sqrt(D) / c, so this is the ``langevin`` step
  with its norms replaced by their expectations: a fixed step per grid time, hence
  batch-invariant (the DESIGN contract) and with the closed-form stationary law of ULA.
* ``none``: the predictor alone.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.process import SDE, AdditiveGaussian, EndpointConditioned, bcast
from diffusekit.sampler import Plan, StepSampler, per_component
from diffusekit.state import batch_size

from .discretization import step_coefficients, time_grid
from .predictors import PREDICTORS, Predictor
from .samplers import AncestralConfig


class PCConfig(AncestralConfig):
    steps: int = Field(1000, ge=1, le=100_000, description="predictor steps; NFE = steps (corrector_steps + 1)")
    predictor: Literal["reverse-diffusion", "euler-maruyama", "ancestral", "none"] = Field(
        "reverse-diffusion", description="predictor update t_k -> t_{k+1}")
    corrector: Literal["ald", "langevin", "none"] = Field(
        "ald", description="corrector at t_k: 'ald' (annealed, batch-invariant) or 'langevin' (snr-adaptive, paper)")
    snr: float = Field(0.16, gt=0, description="signal-to-noise ratio r of the corrector (0.16 CIFAR-10)")
    corrector_steps: int = Field(1, ge=0, le=100, description="corrector iterations per step")
    norm: Literal["batch", "sample"] = Field("batch", description="Langevin norms: batch mean (paper) or per sample")
    scale_eps: float = Field(1.0, gt=0, description="corrector noise scale (GDSS's scale_eps; 1 = Langevin)")


def langevin_step(x: torch.Tensor, score: torch.Tensor, z: torch.Tensor, alpha, snr: float,
                  norm: str = "sample", scale_eps: float = 1.0) -> torch.Tensor:
    """x + eps s + scale_eps sqrt(2 eps) z with eps = 2 alpha (snr |z| / |s|)^2 (``scale_eps``
    < 1 shrinks only the injected noise, not the step size: Jo et al. 2022, GDSS)."""
    g = score.flatten(1).norm(dim=1)
    n = z.flatten(1).norm(dim=1)
    if norm == "batch":
        g, n = g.mean().expand_as(g), n.mean().expand_as(n)
    eps = 2 * alpha * (snr * n / g.clamp_min(torch.finfo(g.dtype).tiny)) ** 2
    eps = bcast(eps, x)
    return x + eps * score + scale_eps * torch.sqrt(2 * eps) * z


def annealed_langevin_step(x: torch.Tensor, score: torch.Tensor, z: torch.Tensor, alpha, snr: float,
                           std, scale_eps: float = 1.0) -> torch.Tensor:
    """x + eps s + scale_eps sqrt(2 eps) z with eps = 2 alpha (snr c(t))^2 (NCSN's annealed Langevin)."""
    eps = 2 * alpha * (snr * std) ** 2
    return x + eps * score + scale_eps * torch.sqrt(2 * eps) * z


def corrector_step(kind: str, x: torch.Tensor, score: torch.Tensor, z: torch.Tensor, alpha, snr: float, std,
                   norm: str = "batch", scale_eps: float = 1.0) -> torch.Tensor:
    """One corrector update: ``"langevin"`` (:func:`langevin_step`) or ``"ald"``
    (:func:`annealed_langevin_step`, ``std`` = c(t)); shared with the GDSS ``s4`` solver."""
    if kind == "langevin":
        return langevin_step(x, score, z, alpha, snr, norm, scale_eps)
    return annealed_langevin_step(x, score, z, alpha, snr, std, scale_eps)


class PredictorCorrector(StepSampler):
    """Any predictor + Langevin corrector; NFE = steps (corrector_steps + 1).

    On a Product process one joint network call per evaluation gives per-key scores; each key
    takes its own component's corrector and predictor coefficients (and, for ``langevin``, its
    own norms)."""

    Config = PCConfig
    requires = (AdditiveGaussian, SDE)
    excludes = (EndpointConditioned,)
    supports_product = True
    stochastic = True

    def final_step_deterministic(self) -> bool:
        return self.config.denoise_final

    def couples_batch(self) -> bool:
        c = self.config  # the paper's Langevin step size averages norms over the batch
        return c.corrector == "langevin" and c.norm == "batch" and c.corrector_steps > 0

    def expected_nfe(self) -> int:
        c = self.config
        per = (1 if c.predictor != "none" else 0) + (c.corrector_steps if c.corrector != "none" else 0)
        return c.steps * per

    def _predictor(self) -> Predictor | None:
        c = self.config
        if c.predictor == "none":
            return None
        rule = self.__dict__.get("_rule_obj")
        if rule is None:
            rule = self.__dict__["_rule_obj"] = PREDICTORS[c.predictor](c.discretization, c.variance)
        return rule

    def build_plan(self, process) -> Plan:
        t = time_grid(process, self.config.steps, self.config.schedule)
        coef = {}
        rule = self._predictor()
        if rule is not None:
            coef.update(rule.coefficients(process, t))
        tr = step_coefficients(process, t, "transition")
        coef["alpha"] = tr["r"] ** 2  # 1 - beta_k (VP / sub-VP), 1 (VE)
        coef["marginal_std"] = tr["c_from"]
        return Plan(t, coef)

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        c = self.config
        process = denoiser.process
        t = plan.t[i].expand(batch_size(x))
        pred = None

        def correct(proc, xk, score, plan_k):
            z = proc.noise_like(xk, generator, cond)
            return corrector_step(c.corrector, xk, score, z, plan_k.coef["alpha"][i], c.snr,
                                  plan_k.coef["marginal_std"][i], c.norm, c.scale_eps)

        if c.corrector != "none":
            for _ in range(c.corrector_steps):
                pred = denoiser(x, t, cond)
                x = per_component(process, correct, x, pred.score, plan=plan)
        rule = self._predictor()
        if rule is not None:
            pred = denoiser(x, t, cond)
            last = i == plan.num_steps - 1
            noise = not (last and c.denoise_final)

            def predict(proc, xk, score, plan_k):
                return rule.update(xk, i, plan_k.coef, t, score, proc, cond, generator, noise)[0]

            x = per_component(process, predict, x, pred.score, plan=plan)
        return x, carry, pred
