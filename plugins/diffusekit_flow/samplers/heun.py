"""``flow-heun``: the explicit trapezoidal rule (Heun's method, second order).

k1 = u(x_i, t_i), x' = x_i + h k1, k2 = u(x', t_{i+1}), x_{i+1} = x_i + h (k1 + k2) / 2, with
h = t_{i+1} - t_i. The last step is an Euler step (Karras et al. 2022, Alg. 1), so the network
is never evaluated at t_end (the data end): NFE = 2 steps - 1.
"""

from __future__ import annotations

from diffusekit.state import batch_size

from .base import FlowSampler


class FlowHeun(FlowSampler):
    """Heun (2nd order) on the flow ODE; Euler on the last step: NFE = 2 steps - 1."""

    def expected_nfe(self) -> int:
        return 2 * self.config.steps - 1

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        n = batch_size(x)
        h = self.host(plan)["h"][i]
        k1, pred = self.velocity(denoiser, x, plan.t[i].expand(n), cond)
        x_e = x.add(k1, alpha=h)
        if i == plan.num_steps - 1:  # host-side step index: no sync
            return x_e, carry, pred
        k2, pred = self.velocity(denoiser, x_e, plan.t[i + 1].expand(n), cond)
        return x.add(k1 + k2, alpha=0.5 * h), carry, pred
