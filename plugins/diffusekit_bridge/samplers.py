"""Bridge samplers from x = x1 (Bridge-TTS, Chen et al. 2023, eqs. 13-15; FrameBridge, Wang et al.
2024, section 4.1; DDBM, Zhou et al. 2023, for the stochastic first step of the ODE).

All three read only x0_hat (the process's posterior / marginal coefficients do the rest), so
they accept parameterizations whose x0 is finite at the pinned end: ``x0``, ``eps-psi``,
``v-psi``, ``saf`` (generic ``eps`` / ``v`` / ``score`` divide by a = 0 or r = 0 at t = 1, where
every bridge sampler evaluates the network first, and are refused).

* ``bridge-sde``: the posterior step s -> u, x_u = k_s x_s + k_0 x0_hat + k_z z with
  k_s = (alpha_u / alpha_s) rho_u^2 / rho_s^2, k_0 = alpha_u (1 - rho_u^2 / rho_s^2),
  k_z = alpha_u rho_u sqrt(1 - rho_u^2 / rho_s^2); for VE-type schedules (alpha = 1) this is
  x_u = (sigma_u^2 / sigma_s^2) x_s + (1 - sigma_u^2 / sigma_s^2) x0_hat + sigma_u sqrt(1 - ...) z.
  With x0_hat = x0 it maps N(a_s x0 + b_s x1, c_s^2) exactly onto N(a_u x0 + b_u x1, c_u^2).
* ``bridge-ode``: the first-order step of the bridge probability-flow ODE with x0_hat held fixed,
  x_u = a_u x0_hat + b_u x1 + (c_u / c_s) (x_s - a_s x0_hat - b_s x1) (for gmax this expands to
  the reference's (sigma_u sbar_u) / (sigma_s sbar_s) x_s + ... coefficients).
* ``bridge-heun``: second order: x0_hat averaged over the two ends of the step (trapezoid on
  x0_hat; the step to t = 0 is first order), NFE 2N - 1 (2N - 2 when the first step is the
  posterior step, which needs one evaluation).

The first step leaves the pinned point x1 (c = 0), where the ODE has no spread: with
``first_step="sde"`` (default for the ODE samplers) it is the posterior step, which draws
x_u ~ N(a_u x0_hat + b_u x1, c_u^2); ``"ode"`` keeps it deterministic (c_u / c_1 := 0), so every
sample of one condition lands on the same point.

Time grids (``grid``; float64 plans, built once; ``"default"`` takes the process's
``default_grid``: ``framebridge`` for ``bridge``, ``process`` for the speech ``sb``):

* ``"framebridge"`` (default): t_i = (i + 1) / (N + 1), i = N, ..., 1, so the first evaluation is
  at t_N = 1 (x = x1 exactly) and the last step, from t_1 = 2 / (N + 1), returns x0_hat (it steps
  to t = 0, where the posterior and the ODE step both equal x0_hat); t_0 = 1 / (N + 1) is not used.
* ``"uniform"``: linspace(1, 0, N + 1); the last step also returns x0_hat.
* ``"power"``: t_i = (i / N)^rho (rho 3 by default), dense near t = 0, so the last prediction is
  made at little noise; the last step returns x0_hat. Returning x0_hat = E[x0 | x_t] from a time
  with much noise gives the posterior mean, whose spread is smaller than the data's (on the
  Gaussian toy its variance is s^2 a^2 s^2 / (a^2 s^2 + c^2)): with 10 steps the framebridge grid
  ends at t = 2/11, where the gmax bridge still has c = 0.9.
* ``"process"``: linspace(1, t_min, N + 1) ending at the process's own t_min with an ordinary step
  (no noise on the last SDE step): the Schrodinger-bridge speech reference (``sb-ode`` /
  ``sb-sde``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from diffusekit.random import randn_like
from diffusekit.sampler import Plan, SamplerConfig, StepSampler

from .processes import BridgeProcess

#: prediction outputs whose x0 is finite where the bridge is pinned
X0_OUTPUTS = frozenset({"x0", "eps_psi", "v_psi"})


class BridgeSamplerConfig(SamplerConfig):
    steps: int = Field(10, ge=1, le=100_000, description="network evaluations N (Heun: 2N - 1)")
    grid: Literal["default", "framebridge", "uniform", "power", "process"] = Field(
        "default", description="default: the process's own (framebridge for `bridge`, process for `sb`); "
        "framebridge: t_i = (i+1)/(N+1) then x0_hat; uniform: linspace(1, 0); power: (i/N)^rho then x0_hat; "
        "process: linspace(1, t_min) ending with an ordinary step")
    rho: float = Field(3.0, ge=1, le=20, description="exponent of the 'power' grid (larger: denser near t = 0)")


class BridgeODEConfig(BridgeSamplerConfig):
    first_step: Literal["sde", "ode"] = Field(
        "sde", description="the step leaving x1 (c = 0): posterior (stochastic) or deterministic ODE")


def bridge_grid(process: BridgeProcess, steps: int, grid: str, rho: float = 3.0) -> torch.Tensor:
    """Decreasing float64 times (steps + 1,) starting at t = 1."""
    n = steps
    if grid == "default":
        grid = process.default_grid
    if grid == "power":
        return (torch.arange(n, -1, -1, dtype=torch.float64) / n) ** rho
    if grid == "framebridge":
        inner = torch.arange(n, 1, -1, dtype=torch.float64) / (n + 1)  # N/(N+1), ..., 2/(N+1)
        return torch.cat([torch.ones(1, dtype=torch.float64), inner, torch.zeros(1, dtype=torch.float64)])
    if grid == "uniform":
        return torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    return torch.linspace(float(process.t_max), float(process.t_min), n + 1, dtype=torch.float64)


class _BridgeSampler(StepSampler):
    Config = BridgeSamplerConfig
    requires = (BridgeProcess,)
    accepts_parameterizations = X0_OUTPUTS

    def build_plan(self, process):
        t = bridge_grid(process, self.config.steps, self.config.grid, self.config.rho)
        a, b, c = process.coefficients(t)
        ks, k0, kz = process.posterior_coefficients(t[:-1], t[1:])
        # ODE ratio c_u / c_s; 0 where c_s = 0 (leaving the pinned point deterministically)
        ratio = torch.where(c[:-1] > 0, c[1:] / c[:-1].clamp_min(1e-300), torch.zeros_like(c[1:]))
        kz = kz.clone()
        kz[-1] = 0.0  # no noise on the last step (it returns x0_hat, or the step's mean at t_min)
        return Plan(t, {"a": a, "b": b, "ks": ks, "k0": k0, "kz": kz, "ratio": ratio,
                        "pinned": (c[:-1] <= 0).to(torch.float64)})

    def _predict(self, denoiser, x, plan, i, cond):
        return denoiser(x, plan.t[i].expand(x.shape[0]), cond)

    @staticmethod
    def posterior(x, x0, plan, i, generator):
        out = plan.coef["ks"][i] * x + plan.coef["k0"][i] * x0
        if i == plan.num_steps - 1:
            return out
        return out + plan.coef["kz"][i] * randn_like(x, generator)

    @staticmethod
    def ode(x, x0, x1, plan, i):
        a, b = plan.coef["a"], plan.coef["b"]
        m_s = a[i] * x0 + b[i] * x1
        m_u = a[i + 1] * x0 + b[i + 1] * x1
        return m_u + plan.coef["ratio"][i] * (x - m_s)


class BridgeSDE(_BridgeSampler):
    """Bridge posterior (SDE) steps q(x_u | x_s, x0_hat); NFE = N."""

    stochastic = True

    def final_step_deterministic(self) -> bool:
        return True

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = self._predict(denoiser, x, plan, i, cond)
        return self.posterior(x, pred.x0, plan, i, generator), None, pred


class BridgeODE(_BridgeSampler):
    """First-order bridge ODE steps (x0_hat held over the step); NFE = N."""

    Config = BridgeODEConfig

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.config.first_step == "sde"

    def final_step_deterministic(self) -> bool:
        return True

    def _first_is_sde(self, plan, i) -> bool:
        return i == 0 and self.config.first_step == "sde"

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = self._predict(denoiser, x, plan, i, cond)
        if self._first_is_sde(plan, i):
            return self.posterior(x, pred.x0, plan, i, generator), None, pred
        x1 = denoiser.process.endpoint(cond, x)
        return self.ode(x, pred.x0, x1, plan, i), None, pred


class BridgeHeun(BridgeODE):
    """Second-order bridge ODE (x0_hat averaged over the step's two ends); NFE = 2N - 1, or
    2N - 2 with the (single-evaluation) posterior first step."""

    def expected_nfe(self) -> int:
        n = self.config.steps
        return 1 if n == 1 else 2 * n - 1 - (self.config.first_step == "sde")

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = self._predict(denoiser, x, plan, i, cond)
        if self._first_is_sde(plan, i):
            return self.posterior(x, pred.x0, plan, i, generator), None, pred
        x1 = denoiser.process.endpoint(cond, x)
        x_u = self.ode(x, pred.x0, x1, plan, i)
        if i == plan.num_steps - 1:
            return x_u, None, pred
        pred2 = denoiser(x_u, plan.t[i + 1].expand(x.shape[0]), cond)
        return self.ode(x, 0.5 * (pred.x0 + pred2.x0), x1, plan, i), None, pred


__all__ = ["BridgeSDE", "BridgeODE", "BridgeHeun", "bridge_grid", "X0_OUTPUTS", "BridgeSamplerConfig",
           "BridgeODEConfig"]
