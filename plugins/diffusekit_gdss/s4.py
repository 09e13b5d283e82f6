"""The S4 solver (Jo, Lee, Hwang 2022, "Score-based Generative Modeling of Graphs via the System
of Stochastic Differential Equations", section 3.3, Algorithm 2): a symmetric splitting
integrator of the reverse diffusion that needs one score evaluation per step.

Per step t -> s = t - h (score S = s_theta(x, t), evaluated once):

1. correction (Langevin, as in the ``pc`` sampler): x <- x + e S + scale_eps sqrt(2 e) z with
   e = 2 alpha (snr |z| / |S|)^2 (``langevin``) or e = 2 alpha (snr c(t))^2 (``ald``), alpha =
   a(t)^2 / a(s)^2 (1 - beta for VP, 1 for VE);
2. prediction by Strang splitting of the reverse SDE dx = [f - g^2 S] dt + g dw_bar into its
   linear part dx = f dt + g dw_bar, solved exactly, and the score part dx = -g^2 S dt:
   a half step of the linear part t -> m = (t + s) / 2, the score step x <- x + g(t)^2 S h,
   and a half step m -> s. Running the linear reverse SDE exactly from t back to m gives
   x_m = x / r + (G / r) z with the forward transition x_t = r x_m + G z (r = a(t) / a(m),
   G^2 = c(t)^2 - r^2 c(m)^2): for VP G^2 / r^2 = 1 / r^2 - 1, for VE G^2 = sigma_t^2 - sigma_m^2.
   Because this is the exact flow of a linear SDE, two half steps compose to the full step.

The corrector reuses the score of step 1 (it is not re-evaluated after the correction), so
NFE = steps. The last step returns the mean of its final half transition (no noise) when
``denoise_final``. Noise is drawn through the process's ``noise_like`` (symmetric, flag-masked
for GDSS adjacency). On a Product process each key takes its own component's coefficients
from one joint network call.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.process import SDE, AdditiveGaussian, EndpointConditioned
from diffusekit.sampler import Plan, SamplerConfig, StepSampler, per_component
from diffusekit.state import batch_size
from diffusekit_sde.discretization import step_coefficients, time_grid
from diffusekit_sde.pc import corrector_step


class S4Config(SamplerConfig):
    steps: int = Field(1000, ge=1, le=100_000, description="steps (= NFE)")
    schedule: str = Field("uniform", description="time grid (registered schedule name)")
    corrector: Literal["ald", "langevin", "none"] = Field(
        "ald", description="'langevin' (snr-adaptive with batch-mean norms, the paper) or 'ald' (batch-invariant)")
    snr: float = Field(0.1, gt=0, description="corrector signal-to-noise ratio")
    scale_eps: float = Field(1.0, gt=0, description="corrector noise scale (paper: 0.7 for community-small)")
    norm: Literal["batch", "sample"] = Field("batch", description="Langevin norms: batch mean (paper) or per sample")
    denoise_final: bool = Field(True, description="last step returns its noise-free mean")


def half_step_coefficients(process, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per step t_k -> t_{k+1}: the two exact reverse linear half steps (``inv_r1``, ``std1``,
    ``inv_r2``, ``std2``), the score step ``g2h`` = g(t_k)^2 h and ``alpha`` = r^2, ``c`` = c(t_k)."""
    t = t.to(torch.float64)
    mid = (t[:-1] + t[1:]) / 2
    fine = torch.stack([t[:-1], mid], 1).reshape(-1)
    fine = torch.cat([fine, t[-1:]])
    half = step_coefficients(process, fine, "transition")
    r, g2 = half["r"], half["G2"]
    full = step_coefficients(process, t, "transition")
    h = t[:-1] - t[1:]
    return {
        "inv_r1": 1.0 / r[0::2], "std1": torch.sqrt(g2[0::2]) / r[0::2],
        "inv_r2": 1.0 / r[1::2], "std2": torch.sqrt(g2[1::2]) / r[1::2],
        "g2h": process.diffusion(t[:-1]).to(torch.float64) ** 2 * h,
        "alpha": full["r"] ** 2, "c": full["c_from"],
    }


class S4(StepSampler):
    """S4 solver: Langevin correction + split exact-linear / score prediction, one score
    evaluation per step (GDSS)."""

    Config = S4Config
    requires = (AdditiveGaussian, SDE)
    excludes = (EndpointConditioned,)
    supports_product = True
    stochastic = True

    def final_step_deterministic(self) -> bool:
        return self.config.denoise_final

    def couples_batch(self) -> bool:
        c = self.config
        return c.corrector == "langevin" and c.norm == "batch"

    def build_plan(self, process) -> Plan:
        t = time_grid(process, self.config.steps, self.config.schedule)
        return Plan(t, half_step_coefficients(process, t))

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        c = self.config
        t = plan.t[i].expand(batch_size(x))
        pred = denoiser(x, t, cond)
        last = i == plan.num_steps - 1
        noise_last = not (last and c.denoise_final)

        def update(proc, xk, score, plan_k):
            k = plan_k.coef
            if c.corrector != "none":
                z = proc.noise_like(xk, generator, cond)
                xk = corrector_step(c.corrector, xk, score, z, k["alpha"][i], c.snr, k["c"][i], c.norm, c.scale_eps)
            xk = k["inv_r1"][i] * xk + k["std1"][i] * proc.noise_like(xk, generator, cond)
            xk = xk + k["g2h"][i] * score
            mean = k["inv_r2"][i] * xk
            if not noise_last:
                return mean
            return mean + k["std2"][i] * proc.noise_like(xk, generator, cond)

        return per_component(denoiser.process, update, x, pred.score, plan=plan), carry, pred


__all__ = ["S4", "S4Config", "half_step_coefficients"]
