"""Exact denoisers for complex Gaussian data under the SGMSE processes (test helpers).

x0 ~ CN(mu, s^2) entrywise (variance s^2 / 2 per real part), y fixed. For an AdditiveGaussian
process x_t = a x0 + b y + c z: p_t = CN(m, v) with m = a mu + b y, v = a^2 s^2 + c^2, so
E[x0 | x_t] = mu + a s^2 (x_t - m) / v and E[z | x_t] = c (x_t - m) / v; the score is
-(x_t - m) / v (docs/plugins/sgmse.md).
"""

from __future__ import annotations

import torch
from torch import nn

from diffusekit_sgmse.processes import mean_reversion_target


class ComplexGaussianOracle(nn.Module):
    def __init__(self, process, mu: torch.Tensor, s: float, output: str):
        super().__init__()
        self.process, self.mu, self.s, self.output = process, mu, s, output

    def forward(self, x_t, t, cond=None):
        a, b, c = (v.to(torch.float64) for v in self.process.coefficients(t.to(torch.float64)))
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        a, b, c = a.reshape(shape), b.reshape(shape), c.reshape(shape)
        y = mean_reversion_target(cond, x_t, "toy").to(torch.complex128)
        x = x_t.to(torch.complex128)
        m = a * self.mu + b * y
        v = (a * a * self.s ** 2 + c * c).clamp_min(1e-300)  # v = 0 only at the SB end t = 1, where a = 0
        if self.output == "eps":
            out = c * (x - m) / v
        else:
            out = self.mu + a * self.s ** 2 * (x - m) / v
        return out.to(x_t.dtype)
