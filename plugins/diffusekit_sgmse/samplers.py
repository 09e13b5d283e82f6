"""Samplers for the SGMSE family (complex states; all plans are float64, built once).

``sgmse-pc`` (Richter et al. 2023, section III-C; reference sgmse/sampling): times
t_i = linspace(1, t_eps, N), each step runs ``corrector_steps`` annealed-Langevin corrector
updates and one reverse-diffusion predictor update:

* ALD:  e_i = 2 (r sigma_{t_i})^2;  x <- x + e_i s + sqrt(2 e_i) z
* RD:   x_m = x - [f(x, t_i) - g(t_i)^2 s] D_i;  x = x_m + g(t_i) sqrt(D_i) z,
  D_i = t_i - t_{i+1}, and the last step uses D = t_eps (it integrates down to 0) and returns
  the noise-free mean x_m. NFE = N (1 + corrector_steps): 60 for the defaults N = 30.

``sgmse-ode``: probability-flow ODE dx/dt = f - g^2 s / 2 (Song et al. 2021, eq. 13), the
score-SDE plugin's ``ode`` sampler with fixed Euler (default), Heun or RK4 steps from 1 to t_eps
on the uniform grid (complex-safe; its adaptive rk45 integrates in float64, real-only).

``storm``: the PC sampler on StoRM's condition stack [y, y_hat] (the OUVE reverts toward the
predictive estimate y_hat, the network sees both); default N = 50.

``sb-ode`` / ``sb-sde`` (Schroedinger bridge, Juki\'c et al. 2024): the bridge plugin's
``bridge-ode`` / ``bridge-sde`` (one implementation of the bridge steps) with the reference's
defaults: grid linspace(1, t_eps, N+1), start at x = y, x0_hat from the network:

* ODE:  x_u = m_u + (c_u / c_s) (x_s - m_s), m = a x0_hat + b y (expands to the reference's
  coefficients; at s = 1, c_s = 0 and x_s = m_s, so the ratio is set to 0 there).
* SDE:  x_u = (sigma_u^2/sigma_s^2) x_s + (1 - sigma_u^2/sigma_s^2) x0_hat
  + sigma_u sqrt(1 - sigma_u^2/sigma_s^2) z (no noise on the last step).

``one-step``: x0_hat = network at t_max (the predictive baseline), NFE 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.errors import ShapeError
from diffusekit.process import SDE, AdditiveGaussian
from diffusekit.random import randn_like
from diffusekit.sampler import Plan, Sampler, SamplerConfig, StepSampler

from diffusekit_bridge.samplers import BridgeODE, BridgeODEConfig, BridgeSamplerConfig, BridgeSDE
from diffusekit_sde.ode import ODEConfig, ProbabilityFlowODE

from .processes import ConditionalEndpoint, SchroedingerBridge


class PCConfig(SamplerConfig):
    steps: int = Field(30, ge=1, le=10_000, description="reverse-diffusion steps N")
    snr: float = Field(0.5, gt=0, le=10, description="annealed Langevin signal-to-noise ratio r")
    corrector: Literal["ald", "none"] = Field("ald", description="annealed Langevin dynamics or none")
    corrector_steps: int = Field(1, ge=0, le=100)


class SGMSEPC(StepSampler):
    """Reverse-diffusion predictor + annealed Langevin corrector (SGMSE+ default)."""

    Config = PCConfig
    requires = (SDE, AdditiveGaussian)
    stochastic = True

    def final_step_deterministic(self) -> bool:
        return True  # the last step returns the predictor's mean

    def _n_corr(self) -> int:
        return 0 if self.config.corrector == "none" else self.config.corrector_steps

    def expected_nfe(self) -> int:
        return self.config.steps * (1 + self._n_corr())

    def build_plan(self, process):
        n = self.config.steps
        ts = torch.linspace(process.t_max, process.t_min, n, dtype=torch.float64)
        t = torch.cat([ts, torch.zeros(1, dtype=torch.float64)])
        dt = t[:-1] - t[1:]  # last entry = t_eps
        g = process.diffusion(ts)
        sigma = process.coefficients(ts)[2]
        ald = 2 * (self.config.snr * sigma) ** 2
        return Plan(t, {"dt": dt, "g2dt": g * g * dt, "gsqdt": g * torch.sqrt(dt), "ald": ald,
                        "ald_noise": torch.sqrt(2 * ald)})

    def check_cond(self, x, cond) -> None:
        pass

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        process = denoiser.process
        if i == 0:
            self.check_cond(x, cond)
        t = plan.t[i].expand(x.shape[0])
        for _ in range(self._n_corr()):
            s = denoiser(x, t, cond).score
            x = x + plan.coef["ald"][i] * s + plan.coef["ald_noise"][i] * randn_like(x, generator)
        pred = denoiser(x, t, cond)
        mean = x - process.drift(x, t, cond) * plan.coef["dt"][i] + plan.coef["g2dt"][i] * pred.score
        if i == plan.num_steps - 1:
            return mean, None, pred
        return mean + plan.coef["gsqdt"][i] * randn_like(x, generator), None, pred


class StormConfig(PCConfig):
    steps: int = Field(50, ge=1, le=10_000, description="reverse-diffusion steps N (StoRM: 50)")


class Storm(SGMSEPC):
    """StoRM sampling: the PC sampler with cond = stack([y, y_hat], 1) (y_hat = predictive estimate)."""

    Config = StormConfig
    requires = (SDE, AdditiveGaussian, ConditionalEndpoint)

    def check_cond(self, x, cond) -> None:
        if cond is None or cond.ndim != x.ndim + 1 or cond.shape[1] != 2:
            got = None if cond is None else tuple(cond.shape)
            raise ShapeError(
                f"storm: cond must stack [y, y_hat] as (B, 2, F, T) (y_hat from the predictive model, "
                f"see diffusekit_sgmse.enhance.storm_condition); got {got}")


class SGMSEODEConfig(ODEConfig):
    steps: int = Field(30, ge=1, le=100_000, description="number of fixed steps")
    method: Literal["euler", "heun", "rk4"] = Field(
        "euler", description="fixed-step integrator (the adaptive rk45 integrates in float64 and is real-only)")


class SGMSEODE(ProbabilityFlowODE):
    """The score-SDE plugin's probability-flow ODE sampler (one implementation of the fixed-step
    integrators) with SGMSE defaults: 30 uniform Euler steps from 1 to t_eps; complex-safe."""

    Config = SGMSEODEConfig
    requires = (SDE, AdditiveGaussian)


class SBSamplerConfig(BridgeSamplerConfig):
    steps: int = Field(50, ge=1, le=10_000, description="bridge steps N (reference: 50)")
    grid: Literal["default", "framebridge", "uniform", "power", "process"] = Field(
        "process", description="process: the reference grid linspace(1, t_eps, N+1) (see bridge-sde)")


class SBODEConfig(BridgeODEConfig):
    steps: int = Field(50, ge=1, le=10_000, description="bridge steps N (reference: 50)")
    grid: Literal["default", "framebridge", "uniform", "power", "process"] = Field(
        "process", description="process: the reference grid linspace(1, t_eps, N+1) (see bridge-ode)")
    first_step: Literal["sde", "ode"] = Field("ode", description="the reference leaves y deterministically")


class SBODE(BridgeODE):
    """The bridge plugin's ODE sampler with the speech reference's defaults (N 50, grid
    linspace(1, t_eps, N + 1), deterministic first step); NFE = N."""

    Config = SBODEConfig
    requires = (SchroedingerBridge,)


class SBSDE(BridgeSDE):
    """The bridge plugin's posterior (SDE) sampler with the speech reference's defaults (N 50,
    grid linspace(1, t_eps, N + 1), no noise on the last step); NFE = N."""

    Config = SBSamplerConfig
    requires = (SchroedingerBridge,)


class OneStepConfig(SamplerConfig):
    steps: int = Field(1, ge=1, le=1, description="always one network evaluation")


class OneStep(Sampler):
    """Predictive enhancement: x0_hat from one network evaluation at t_max (NFE 1)."""

    Config = OneStepConfig
    requires = (ConditionalEndpoint,)

    def expected_nfe(self) -> int:
        return 1

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        t = torch.full((x.shape[0],), float(process.t_max), dtype=x.real.dtype, device=x.device)
        return denoiser(x, t, cond).x0


__all__ = ["SGMSEPC", "Storm", "SGMSEODE", "SBODE", "SBSDE", "OneStep"]
