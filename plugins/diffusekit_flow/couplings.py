"""Couplings of data and noise within a training batch.

* independent: (x0_i, eps_i) with eps drawn independently of x0 (conditional flow matching);
* ``ot`` (Tong et al. 2023, minibatch OT-CFM; Pooladian et al. 2023): the permutation sigma that
  minimises sum_i |x0_i - eps_sigma(i)|^2 over the batch (an assignment problem, solved exactly
  by ``scipy.optimize.linear_sum_assignment``); every data point and every noise draw is used once;
* ``sinkhorn``: the entropic plan P = argmin <P, C> - eps H(P) with uniform marginals 1/B
  (log-domain Sinkhorn iterations, eps = ``reg`` times the mean cost), then each x0_i takes one
  noise index drawn from row i of P (the data marginal of the batch is kept exactly; noise
  draws may repeat). As reg -> 0 the plan tends to the exact assignment, as reg -> inf to the
  independent coupling.

Costs are squared Euclidean distances over all data dimensions, computed in float64.
"""

from __future__ import annotations

import torch

from diffusekit.errors import ConfigError
from diffusekit.random import rand


def cost_matrix(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """C_ij = |x0_i - eps_j|^2 (float64, (B, B))."""
    a, b = x0.flatten(1).to(torch.float64), eps.flatten(1).to(torch.float64)
    return torch.cdist(a, b) ** 2


def transport_cost(x0: torch.Tensor, eps: torch.Tensor) -> float:
    """Mean squared distance between paired rows: (1/B) sum_i |x0_i - eps_i|^2."""
    return float((x0.flatten(1).to(torch.float64) - eps.flatten(1).to(torch.float64)).pow(2).sum(1).mean())


def exact_assignment(cost: torch.Tensor) -> torch.Tensor:
    """The permutation ``perm`` minimising sum_i cost[i, perm[i]] (scipy's Hungarian / LAPJV)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    perm = torch.empty(cost.shape[0], dtype=torch.long)
    perm[torch.from_numpy(rows)] = torch.from_numpy(cols)
    return perm.to(cost.device)


def sinkhorn_plan(cost: torch.Tensor, reg: float = 0.05, iters: int = 100) -> torch.Tensor:
    """Entropic OT plan with uniform marginals (rows and columns sum to 1/B); ``reg`` is relative
    to the mean cost. Log-domain updates, float64."""
    c = cost.to(torch.float64)
    n, m = c.shape
    eps = reg * float(c.mean().clamp_min(1e-300))
    log_a = torch.full((n,), -torch.log(torch.tensor(float(n), dtype=torch.float64)).item(), dtype=torch.float64,
                       device=c.device)
    log_b = torch.full((m,), -torch.log(torch.tensor(float(m), dtype=torch.float64)).item(), dtype=torch.float64,
                       device=c.device)
    f = torch.zeros(n, dtype=torch.float64, device=c.device)
    g = torch.zeros(m, dtype=torch.float64, device=c.device)
    for _ in range(iters):
        f = eps * (log_a - torch.logsumexp((g[None, :] - c) / eps, dim=1))
        g = eps * (log_b - torch.logsumexp((f[:, None] - c) / eps, dim=0))
    return torch.exp((f[:, None] + g[None, :] - c) / eps)


def couple(x0: torch.Tensor, eps: torch.Tensor, how: str, reg: float = 0.05, iters: int = 100,
           generator=None) -> torch.Tensor:
    """Reorder the noise batch ``eps`` to pair it with ``x0`` by ``how`` (``independent``, ``ot``,
    ``sinkhorn``); returns the noise of each data row."""
    if how == "independent":
        return eps
    if x0.shape != eps.shape:
        raise ConfigError(f"coupling: data {tuple(x0.shape)} and noise {tuple(eps.shape)} batches differ",
                          loc="parameterization.coupling")
    cost = cost_matrix(x0, eps)
    if how == "ot":
        return eps[exact_assignment(cost)]
    if how == "sinkhorn":
        plan = sinkhorn_plan(cost, reg, iters)
        rows = plan / plan.sum(1, keepdim=True)
        cdf = torch.cumsum(rows, 1)
        u = rand((x0.shape[0],), generator, "cpu", torch.float64).to(cdf.device)
        idx = torch.searchsorted(cdf, u[:, None] * cdf[:, -1:]).squeeze(1).clamp_max(eps.shape[0] - 1)
        return eps[idx]
    raise ConfigError(f"unknown coupling {how!r}; use 'independent', 'ot' or 'sinkhorn'", loc="parameterization.coupling")
