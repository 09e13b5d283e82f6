"""Fixed-step deterministic solvers as tables + step kernels that run unchanged inside an
ONNX ``Scan`` (``torch._higher_order_ops.scan``) or in a plain Python loop.

All coefficients are computed once in float64 from the process's a(t), b(t), c(t) (and
derivatives) on the time grid ``t_0 > ... > t_N`` and stored as one float32 row per step.
With z = x - b y (y: the condition endpoint, 0 for VP / VE) and the denoiser's x0 / eps:

* ``ddim`` (Song et al. 2021, eq. 12 with eta = 0):  x_{i+1} = a_{i+1} x0 + b_{i+1} y + c_{i+1} eps.
* ``euler``: x_{i+1} = x_i + h_i v(x_i, t_i), probability-flow velocity v = a' x0 + b' y + c' eps
  (Song et al. 2021, eq. 13; same form as the ``ode`` sampler), h_i = t_{i+1} - t_i.
* ``heun``: x_{i+1} = x_i + h_i (v(x_i, t_i) + v(x_i + h_i v_i, t_{i+1})) / 2, with a plain Euler
  last step (Karras et al. 2022, Alg. 1; NFE 2N - 1).
* ``dpm-solver++`` (2M, Lu et al. 2022, Alg. 2) with lambda = log(a / c), h_i = lambda_{i+1} - lambda_i:
  z_{i+1} = (c_{i+1} / c_i) z_i + a_{i+1} (1 - e^{-h_i}) D_i, D_0 = x0_0 and, for i >= 1,
  D_i = (1 + 1 / (2 r_i)) x0_i - x0_{i-1} / (2 r_i), r_i = h_{i-1} / h_i; the last step is
  first order when ``lower_order_final`` and N < 15 (as DPM-Solver), or when it ends at c = 0.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from diffusekit.errors import CompatibilityError
from diffusekit.process import AdditiveGaussian

METHODS = ("ddim", "euler", "heun", "dpm-solver++")


def _coefs(process, t: torch.Tensor):
    a, b, c = (v.to(torch.float64) for v in process.coefficients(t))
    return a, b, c


def _derivs(process, t: torch.Tensor):
    return tuple(v.to(torch.float64) for v in process.coefficient_derivatives(t))


def tables(method: str, process, times: torch.Tensor, lower_order_final: bool = True) -> dict[str, torch.Tensor]:
    """float64 ``{"rows": (S, K)[, "final": (K',)]}`` for ``method`` on the grid ``times``."""
    if not isinstance(process, AdditiveGaussian):
        raise CompatibilityError(f"ONNX sampler graphs need an AdditiveGaussian process, got {type(process).__name__}")
    t = times.to(torch.float64)
    n = t.shape[0] - 1
    a, b, c = _coefs(process, t)
    if method == "ddim":
        rows = torch.stack([t[:-1], a[1:], b[1:], c[1:]], 1)
        return {"rows": rows}
    if method in ("euler", "heun"):
        da, db, dc = _derivs(process, t)
        h = t[1:] - t[:-1]
        euler = torch.stack([t[:-1], h, da[:-1], db[:-1], dc[:-1]], 1)
        if method == "euler":
            return {"rows": euler}
        heun = torch.stack([t[:-1], h, da[:-1], db[:-1], dc[:-1], t[1:], da[1:], db[1:], dc[1:]], 1)
        return {"rows": heun[:-1], "final": euler[-1]}
    if method == "dpm-solver++":
        lam = torch.log(a) - torch.log(c)
        h = lam[1:] - lam[:-1]
        ratio = c[1:] / c[:-1]
        phi = -a[1:] * torch.expm1(-h)
        w_cur = torch.ones(n, dtype=torch.float64)
        w_prev = torch.zeros(n, dtype=torch.float64)
        if n > 1:
            r = h[:-1] / h[1:]
            w_cur[1:] = 1 + 1 / (2 * r)
            w_prev[1:] = -1 / (2 * r)
            if (lower_order_final and n < 15) or bool(c[-1] == 0):  # as DPM-Solver: few steps / sigma = 0 end
                w_cur[-1], w_prev[-1] = 1.0, 0.0
        rows = torch.stack([t[:-1], ratio, phi, w_cur, w_prev, b[:-1], b[1:]], 1)
        return {"rows": rows}
    raise CompatibilityError(f"no ONNX kernel for solver {method!r}; kernels: {list(METHODS)}")


def expected_nfe(method: str, steps: int) -> int:
    return 2 * steps - 1 if method == "heun" else steps


Predict = Callable[[torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor, Any]]


def _per_sample(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar row entry as a (B,) time without using the (symbolic) batch size."""
    return value + torch.zeros_like(x.reshape(x.shape[0], -1)[:, 0])


def _add_y(x: torch.Tensor, coef: torch.Tensor, y):
    return x if y is None else x + coef * y


def step(method: str, predict: Predict, x: torch.Tensor, prev: torch.Tensor, row: torch.Tensor, cond):
    """One step of ``method``: ``(x, prev_x0, row) -> (x_next, x0)``; ``predict`` gives (x0, eps, y)."""
    t = _per_sample(row[0], x)
    x0, eps, y = predict(x, t, cond)
    if method == "ddim":
        return _add_y(row[1] * x0 + row[3] * eps, row[2], y), x0
    if method == "euler":
        v = _add_y(row[2] * x0 + row[4] * eps, row[3], y)
        return x + row[1] * v, x0
    if method == "heun":
        v1 = _add_y(row[2] * x0 + row[4] * eps, row[3], y)
        xp = x + row[1] * v1
        x0b, epsb, _ = predict(xp, _per_sample(row[5], x), cond)
        v2 = _add_y(row[6] * x0b + row[8] * epsb, row[7], y)
        return x + row[1] * (v1 + v2) / 2, x0
    if method == "dpm-solver++":
        z = _add_y(x, -row[5], y)
        d = row[3] * x0 + row[4] * prev
        return _add_y(row[1] * z + row[2] * d, row[6], y), x0
    raise CompatibilityError(f"no ONNX kernel for solver {method!r}")
