"""``flow-euler``: x_{i+1} = x_i + (t_{i+1} - t_i) u(x_i, t_i); NFE = steps.

On the linear path this is the DDIM step x_{i+1} = a_{i+1} x0_hat + c_{i+1} eps_hat (with
x0_hat = x - t u, eps_hat = x + (1 - t) u), so ``ddim`` (eta = 0) and the EDM ``euler`` sampler
give the same map on the same time grid.
"""

from __future__ import annotations

from diffusekit.state import batch_size

from .base import FlowSampler


class FlowEuler(FlowSampler):
    """Euler on the flow ODE dx/dt = u on the path's native (uniform) grid; NFE = steps."""

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        u, pred = self.velocity(denoiser, x, plan.t[i].expand(batch_size(x)), cond)
        return x.add(u, alpha=self.host(plan)["h"][i]), carry, pred
