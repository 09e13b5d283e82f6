"""GDSS process: symmetric flag-masked noise, priors and perturbations, node flags for
unconditional sampling, the S4 half transitions, and closed-form sampling with the exact score
of Gaussian node-feature / adjacency data (pc from the score-SDE plugin and s4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import diffusekit as dk
from diffusekit.errors import ConfigError
from diffusekit.process import bcast
from diffusekit.testing.conformance import check_object

from diffusekit_gdss.processes import GDSS, AdjacencyVE, AdjacencyVP, NodeVP, symmetric_noise
from diffusekit_gdss.s4 import half_step_coefficients


def _flags(b, n, sizes):
    return (torch.arange(n).unsqueeze(0) < torch.as_tensor(sizes).unsqueeze(1)).float()


def test_symmetric_noise_zero_diagonal_unit_offdiagonal_variance_under_flags():
    proc = GDSS(max_nodes=5)
    b = 20_000
    flags = _flags(b, 5, [5 if i % 2 else 3 for i in range(b)])
    z = proc.components["adj"].noise_like(torch.zeros(b, 5, 5), torch.Generator().manual_seed(0), flags)
    assert torch.equal(z, z.transpose(1, 2))
    assert float(z.diagonal(dim1=1, dim2=2).abs().max()) == 0.0
    full = z[1::2]  # 5 real nodes: every off-diagonal entry is N(0, 1)
    iu = torch.triu_indices(5, 5, 1)
    pairs = full[:, iu[0], iu[1]]
    assert torch.allclose(pairs.var(0), torch.ones(10), atol=0.05)
    assert torch.allclose(pairs.mean(0), torch.zeros(10), atol=0.03)
    corr = torch.corrcoef(pairs.T)  # distinct pairs are independent
    assert float((corr - torch.eye(10)).abs().max()) < 0.05
    part = z[0::2]  # 3 real nodes: rows / columns 3, 4 are exactly zero, the rest unit variance
    assert float(part[:, 3:, :].abs().max()) == 0.0 and float(part[:, :, 3:].abs().max()) == 0.0
    assert abs(float(part[:, 0, 1].var()) - 1.0) < 0.05
    assert torch.equal(symmetric_noise(torch.eye(3).expand(2, 3, 3)), torch.zeros(2, 3, 3))


def test_node_noise_prior_and_perturb_respect_flags(gen):
    proc = GDSS(max_nodes=6, num_features=3)
    flags = _flags(4, 6, [2, 6, 4, 1])
    prior = proc.prior(4, proc.sample_shape, cond=flags, generator=gen)
    assert float(prior["x"][0, 2:].abs().max()) == 0.0 and float(prior["x"][0, :2].abs().min()) > 0
    assert float(prior["adj"][2, 4:].abs().max()) == 0.0
    assert torch.equal(prior["adj"], prior["adj"].transpose(1, 2))
    x0, cond = proc.conformance_example(4, gen)
    t = proc.sample_time(4, gen)
    pert = proc.perturb(x0, t, cond, gen)
    for k in ("x", "adj"):
        a, _, c = proc.components[k].coefficients(t)
        assert torch.allclose(pert.x_t[k], bcast(a, x0[k]) * x0[k] + bcast(c, x0[k]) * pert.noise[k], atol=1e-6)
    pad = cond == 0
    assert float(pert.x_t["x"][pad].abs().sum()) == 0.0
    assert torch.equal(pert.x_t["adj"], pert.x_t["adj"].transpose(1, 2))
    assert float(pert.noise["adj"].diagonal(dim1=1, dim2=2).abs().max()) == 0.0


def test_presets_and_overrides_pick_the_papers_sdes():
    grid = GDSS(preset="grid")
    assert isinstance(grid.components["adj"], AdjacencyVP) and grid.components["adj"].config.beta_max == 0.8
    assert isinstance(grid.components["x"], NodeVP) and grid.components["x"].config.beta_max == 1.0
    enz = GDSS(preset="enzymes")
    assert isinstance(enz.components["adj"], AdjacencyVE) and enz.components["adj"].config.sigma_min == 0.2
    over = GDSS(adj={"sde": "ve", "lo": 0.1, "hi": 2.0})
    assert over.components["adj"].prior_std() == 2.0
    with pytest.raises(ConfigError, match="hi"):
        GDSS(x={"sde": "vp", "lo": 1.0, "hi": 0.5})
    with pytest.raises(ConfigError, match="node_counts"):
        GDSS(max_nodes=4, node_counts=[1.0, 2.0])


def test_sample_cond_draws_sizes_from_node_counts_batch_invariantly():
    proc = GDSS(max_nodes=5, node_counts=[0, 1, 0, 3, 0])
    flags = proc.sample_cond(8000, torch.Generator().manual_seed(0))
    sizes = flags.sum(1)
    assert set(sizes.unique().tolist()) == {2.0, 4.0}
    assert abs(float((sizes == 4).float().mean()) - 0.75) < 0.02
    assert torch.equal(flags, (torch.arange(5) < sizes.unsqueeze(1)).float())  # first `size` nodes
    big = proc.sample_cond(6, [torch.Generator().manual_seed(s) for s in range(6)])
    small = proc.sample_cond(3, [torch.Generator().manual_seed(s) for s in range(3)])
    assert torch.equal(big[:3], small)
    assert torch.equal(GDSS(max_nodes=3).sample_cond(2), torch.ones(2, 3))


@pytest.mark.parametrize("spec", [{"sde": "vp", "lo": 0.1, "hi": 1.0}, {"sde": "vp", "lo": 0.2, "hi": 0.8},
                                  {"sde": "vp", "lo": 0.1, "hi": 20.0}, {"sde": "ve", "lo": 0.2, "hi": 1.0}])
def test_two_s4_half_transitions_compose_to_the_full_transition(spec):
    comp = GDSS(adj=spec).components["adj"]
    t = torch.linspace(1.0, 1e-3, 41, dtype=torch.float64)
    k = half_step_coefficients(comp, t)
    a, _, c = comp.coefficients(t)
    r = a[:-1] / a[1:]  # full forward transition x_t = r x_s + G z
    g2 = c[:-1] ** 2 - r ** 2 * c[1:] ** 2
    # mean: two inverse half decays = one inverse full decay; variance: (s1^2 / r2^2 + s2^2) = G^2 / r^2
    assert torch.allclose(k["inv_r1"] * k["inv_r2"], 1 / r, rtol=1e-10)
    assert torch.allclose(k["std1"] ** 2 * k["inv_r2"] ** 2 + k["std2"] ** 2, g2 / r ** 2, rtol=1e-8, atol=1e-14)
    if spec["sde"] == "vp":  # VP: the reverse linear flow's variance is 1 / r^2 - 1
        assert torch.allclose(g2 / r ** 2, 1 / r ** 2 - 1, rtol=1e-8)
    # Monte Carlo through the sampler's own noise path: 2 half steps from a fixed point
    i, n = 7, 200_000
    gen = torch.Generator().manual_seed(3)
    x = torch.full((n,), 0.8, dtype=torch.float64)
    x = k["inv_r1"][i] * x + k["std1"][i] * torch.randn(n, generator=gen, dtype=torch.float64)
    x = k["inv_r2"][i] * x + k["std2"][i] * torch.randn(n, generator=gen, dtype=torch.float64)
    assert abs(float(x.mean()) - 0.8 / float(r[i])) < 4 * float(torch.sqrt(g2[i])) / float(r[i]) / n ** 0.5 + 1e-9
    assert abs(float(x.var()) / float(g2[i] / r[i] ** 2) - 1) < 0.02


class GaussianGraphOracle(nn.Module):
    """Exact eps prediction for X entries ~ N(mx, sx^2) and symmetric A pairs ~ N(ma, sa^2)
    (zero diagonal) on the real nodes: eps_hat = c (x - a m) / (a^2 s^2 + c^2), masked."""

    def __init__(self, process, mx, sx, ma, sa):
        super().__init__()
        self.process, self.stats = process, {"x": (mx, sx), "adj": (ma, sa)}

    def forward(self, x_t, t, cond=None):
        from diffusekit_gdss.processes import adj_mask, node_mask

        out = {}
        for k, (m, s) in self.stats.items():
            a, _, c = (bcast(v, x_t[k]) for v in self.process.components[k].coefficients(t))
            eps = c * (x_t[k] - a * m) / (a * a * s * s + c * c)
            out[k] = node_mask(cond, eps) if k == "x" else adj_mask(cond, eps * (1 - torch.eye(eps.shape[-1])))
        return out


@pytest.mark.parametrize("sampler", [
    {"name": "pc", "steps": 200, "predictor": "reverse-diffusion", "corrector": "langevin", "snr": 0.1,
     "scale_eps": 1.0},
    {"name": "pc", "steps": 200, "predictor": "euler-maruyama", "corrector": "ald", "snr": 0.1},
    # S4 reuses the step's first score after the half step (one evaluation a step): its variance
    # deficit is first order in h (-10% at 100 steps, -6% at 200, -2.5% at 400 on this problem)
    {"name": "s4", "steps": 400, "corrector": "langevin", "snr": 0.1},
    {"name": "s4", "steps": 400, "corrector": "none"},
])
def test_pc_and_s4_reproduce_gaussian_means_and_variances(sampler):
    vp = {"sde": "vp", "lo": 0.1, "hi": 20.0}
    proc = GDSS(max_nodes=4, num_features=2, x=vp, adj=vp)
    mx, sx, ma, sa = 0.5, 0.3, 0.7, 0.2
    pipe = dk.Pipeline(proc, GaussianGraphOracle(proc, mx, sx, ma, sa), "eps", sampler=sampler,
                       sample_shape=proc.sample_shape)
    n = 3000
    flags = _flags(n, 4, [3 if i % 3 == 0 else 4 for i in range(n)])
    out = pipe.sample(n, cond=flags, generator=torch.Generator().manual_seed(0))
    assert pipe.last_nfe == 400  # pc: 200 predictor + 200 corrector evaluations
    t_end = torch.tensor([proc.t_min], dtype=torch.float64)
    for k, m, s in (("x", mx, sx), ("adj", ma, sa)):
        a, _, c = (float(v) for v in proc.components[k].coefficients(t_end))
        want_mean, want_var = a * m, a * a * s * s + c * c
        if k == "x":
            vals = out["x"][flags.bool()]
        else:
            iu = torch.triu_indices(4, 4, 1)
            full = out["adj"][flags.sum(1) == 4]
            vals = full[:, iu[0], iu[1]]
        assert abs(float(vals.mean()) - want_mean) < 0.02, (k, float(vals.mean()), want_mean)
        assert abs(float(vals.var()) / want_var - 1) < 0.06, (k, float(vals.var()), want_var)
    pad = flags == 0
    assert float(out["x"][pad].abs().max()) == 0.0
    assert torch.equal(out["adj"], out["adj"].transpose(1, 2))
    assert float(out["adj"].diagonal(dim1=1, dim2=2).abs().max()) == 0.0
    assert float(out["adj"][flags.sum(1) == 3][:, 3].abs().max()) == 0.0


def test_process_passes_the_conformance_kit():
    res = check_object("process", GDSS())
    assert res and all(r.status in ("pass", "skip") for r in res), [r.line() for r in res]
    assert any("Product" in r.check and r.status == "pass" for r in res)


def test_s4_sampler_passes_the_conformance_kit():
    res = check_object("sampler", dk.create("sampler", "s4", steps=200))
    assert res and all(r.status == "pass" for r in res), [r.line() for r in res]


def test_bad_condition_is_named():
    proc = GDSS(max_nodes=3)
    with pytest.raises(Exception, match="node flags"):
        proc.prior(2, proc.sample_shape, cond={"flags": torch.ones(2, 3)})
