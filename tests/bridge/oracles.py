"""Exact denoisers of the Gaussian toy for the bridge family: x0 ~ N(mu, s^2 I), fixed x1.

With x_t = a x0 + b x1 + c eps, E[x0 | x_t] = mu + a s^2 (x_t - a mu - b x1) / (a^2 s^2 + c^2)
(at the pinned end a = c = 0 it is mu). The oracle returns it in the parameterization asked for."""

from __future__ import annotations

import torch
from torch import nn

from diffusekit.process import bcast
from diffusekit_bridge.parameterizations import EpsPsi


class GaussianBridgeOracle(nn.Module):
    def __init__(self, process, mu: float, s: float, x1: torch.Tensor, output: str = "x0"):
        super().__init__()
        self.process, self.mu, self.s, self.output = process, mu, s, output
        self.register_buffer("x1", x1)

    def x0(self, x, t):
        a, b, c = (bcast(v.to(torch.float64), x) for v in self.process.coefficients(t.to(torch.float64)))
        x = x.to(torch.float64)
        den = (a * a * self.s ** 2 + c * c).clamp_min(1e-300)
        return self.mu + a * self.s ** 2 * (x - a * self.mu - b * self.x1.to(x)) / den

    def forward(self, x, t, cond=None):
        x0 = self.x0(x, t)
        if self.output == "x0":
            out = x0
        elif self.output == "eps_psi":
            out = EpsPsi.target(self.process, x.to(torch.float64), t.to(torch.float64), x0)
        else:  # v_psi: v = (a / r) eps_hat - (c / r) x0_hat with eps_hat = (z - a x0_hat) / c, r-normalised
            ar, cr, _ = self.process.normalized_coefficients(t.to(torch.float64))
            xr = self.process.reduced(x.to(torch.float64), t.to(torch.float64), self.x1.to(torch.float64).expand_as(x))
            ar, cr = bcast(ar, x), bcast(cr, x)
            # x0 = ar xr - cr v  =>  v = (ar xr - x0) / cr  (cr > 0 for t > 0)
            out = torch.where(cr > 0, (ar * xr - x0) / cr.clamp_min(1e-300), -x0)
        return out.to(x.dtype)
