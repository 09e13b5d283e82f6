"""``flow-midpoint``: the explicit midpoint rule (second order).

k1 = u(x_i, t_i), x_m = x_i + (h / 2) k1, x_{i+1} = x_i + h u(x_m, t_i + h / 2); NFE = 2 steps.
Neither evaluation is at t_end, so every step keeps second order up to the data end.
"""

from __future__ import annotations

from diffusekit.state import batch_size

from .base import FlowSampler


class FlowMidpoint(FlowSampler):
    """Explicit midpoint (2nd order) on the flow ODE; NFE = 2 steps."""

    def expected_nfe(self) -> int:
        return 2 * self.config.steps

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        n = batch_size(x)
        h = self.host(plan)["h"][i]
        k1, _ = self.velocity(denoiser, x, plan.t[i].expand(n), cond)
        k2, pred = self.velocity(denoiser, x.add(k1, alpha=0.5 * h), plan.coef["tm"][i].expand(n), cond)
        return x.add(k2, alpha=h), carry, pred
