"""Minibatch couplings: exact OT against known optima, Sinkhorn plans (docs/plugins/flow.md)."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.denoiser import Denoiser
from diffusekit.errors import ConfigError
from diffusekit_flow.couplings import (couple, cost_matrix, exact_assignment, sinkhorn_plan,
                                       transport_cost)


def _gauss(n, d, mean, std, seed):
    return mean + std * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_exact_assignment_in_1d_is_the_sorted_pairing():
    """In one dimension the optimal assignment for a convex cost pairs order statistics."""
    x = _gauss(300, 1, 2.0, 0.5, 0)
    z = _gauss(300, 1, 0.0, 1.0, 1)
    paired = couple(x, z, "ot")
    ox, oz = torch.argsort(x[:, 0]), torch.argsort(paired[:, 0])
    assert torch.equal(ox, oz)  # ranks of data and assigned noise coincide
    assert sorted(paired[:, 0].tolist()) == sorted(z[:, 0].tolist())  # a permutation: each noise used once


def test_ot_coupling_reduces_transport_cost_to_the_known_optimum():
    """Gaussians N(m1, s1^2 I_d) -> N(m2, s2^2 I_d): W2^2 = |m1 - m2|^2 + d (s1 - s2)^2, the
    independent coupling costs |m1 - m2|^2 + d (s1^2 + s2^2). Minibatch OT lies between (the
    expected minibatch cost is >= W2^2 by convexity) and, in 1-D with B = 1024, within 3 % of W2^2."""
    d, m, s1, s2 = 1, 3.0, 0.5, 1.0
    x = _gauss(1024, d, m, s1, 2)
    z = _gauss(1024, d, 0.0, s2, 3)
    w2 = m * m * d + d * (s1 - s2) ** 2
    indep = m * m * d + d * (s1 ** 2 + s2 ** 2)
    c_ind, c_ot = transport_cost(x, z), transport_cost(x, couple(x, z, "ot"))
    assert abs(c_ind - indep) < 0.1 * indep
    assert c_ot < c_ind
    assert abs(c_ot - w2) < 0.03 * w2 + 0.01, (c_ot, w2)
    # in 8 dimensions minibatch OT is biased upwards but still far below independent pairing
    d = 8
    x, z = _gauss(512, d, 1.0, s1, 4), _gauss(512, d, 0.0, s2, 5)
    w2, indep = d + d * (s1 - s2) ** 2, d + d * (s1 ** 2 + s2 ** 2)
    c_ind, c_ot = transport_cost(x, z), transport_cost(x, couple(x, z, "ot"))
    assert w2 <= c_ot < 0.75 * c_ind, (w2, c_ot, c_ind, indep)


def test_exact_assignment_is_optimal_on_a_tiny_problem():
    cost = torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    import itertools

    best = min(sum(float(cost[i, p[i]]) for i in range(6)) for p in itertools.permutations(range(6)))
    perm = exact_assignment(cost)
    assert sum(float(cost[i, perm[i]]) for i in range(6)) == pytest.approx(best)


def test_sinkhorn_plan_has_uniform_marginals_and_interpolates():
    x, z = _gauss(64, 2, 1.0, 0.5, 6), _gauss(64, 2, 0.0, 1.0, 7)
    cost = cost_matrix(x, z)
    plan = sinkhorn_plan(cost, reg=0.05, iters=300)
    assert torch.allclose(plan.sum(1), torch.full((64,), 1 / 64, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(plan.sum(0), torch.full((64,), 1 / 64, dtype=torch.float64), atol=1e-9)
    # expected cost of the plan: between the exact OT cost and the independent one, closer to OT
    ot = transport_cost(x, couple(x, z, "ot"))
    ind = float(cost.mean())
    ent = float((plan * cost).sum())
    assert ot <= ent + 1e-9 and ent < ot + 0.25 * (ind - ot)
    wide = float((sinkhorn_plan(cost, reg=100.0) * cost).sum())
    assert abs(wide - ind) < 0.01 * ind  # large regularisation: the independent plan
    # pairs drawn row by row from the plan cost on average <P, C> (each row holds mass 1/B)
    drawn = [transport_cost(x, couple(x, z, "sinkhorn", reg=0.05, iters=300,
                                      generator=torch.Generator().manual_seed(k))) for k in range(20)]
    assert abs(sum(drawn) / len(drawn) - ent) < 0.05 * ent, (sum(drawn) / len(drawn), ent)


def test_ot_coupling_in_the_loss():
    """The velocity loss with coupling='ot' trains on OT pairs: with a zero network its value
    is E|eps_sigma - x0|^2 / D over the coupled batch, below the independent one."""
    p = dk.create("process", "rectified-flow")
    x0 = _gauss(256, 2, 2.0, 0.3, 8).float()

    class Zero(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return torch.zeros_like(x)

    vals = {}
    for how in ("independent", "ot", "sinkhorn"):
        par = dk.create("parameterization", {"name": "velocity", "coupling": how})
        vals[how] = float(par.loss(Denoiser(Zero(), par, p), x0, None, torch.Generator().manual_seed(9)))
    assert vals["ot"] < vals["sinkhorn"] < vals["independent"]
    assert vals["ot"] == pytest.approx(transport_cost(x0, couple(x0, torch.randn(
        x0.shape, generator=torch.Generator().manual_seed(9)), "ot")) / 2, rel=1e-5)


def test_coupling_errors():
    with pytest.raises(ConfigError, match="coupling"):
        dk.create("parameterization", {"name": "velocity", "coupling": "optimal"})
    with pytest.raises(ConfigError, match="batches differ"):
        couple(torch.zeros(4, 2), torch.zeros(3, 2), "ot")
    assert math.isfinite(transport_cost(torch.zeros(2, 3), torch.ones(2, 3)))
