"""Guidance and conditioning: closed-form checks against exact oracles (no training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffusekit as dk
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.guidance import Guidance
from diffusekit.network import Network
from diffusekit.testing import GaussianMixture, MixtureOracle, mmd, mmd_noise_floor
from diffusekit_guidance.cfg import CFG, CFGPlusPlus
from diffusekit_guidance.classifier import ClassifierGuidance
from diffusekit_guidance.dps import DPS
from diffusekit_guidance.operators import GaussianBlur, Inpainting, MatrixOperator, SuperResolution
from diffusekit_guidance.oracles import (ClassConditionalOracle, ExactClassifier, linear_gaussian_posterior,
                                         product_of_mixtures)
from diffusekit_guidance.resampling import systematic_resample
from diffusekit_guidance.smc import SMC
from diffusekit_guidance.svdd import SVDD

from .reference import conditional_pipeline, ddim, two_class_mixture, vp

N = 1000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def data():
    return two_class_mixture()


@pytest.fixture(scope="module")
def cond_ref(data):
    labels = torch.zeros(N, dtype=torch.long)
    ref = data.sample(labels, _gen(1))
    floor = mmd_noise_floor(lambda n, seed: data.sample(torch.zeros(n, dtype=torch.long), _gen(100 + seed)), N,
                            repeats=3)
    return labels, ref, floor


# ----------------------------------------------------------------------------- registry / config
def test_components_registered_with_validated_configs():
    assert {"cfg", "cfg++", "classifier", "dps", "smc", "svdd"} <= set(dk.components("guidance"))
    assert {"label", "array", "passthrough"} <= set(dk.components("conditioner"))
    with pytest.raises(ConfigError, match="scale"):
        dk.create("guidance", "cfg++", scale=1.5)
    with pytest.raises(ConfigError, match="ess_threshold"):
        dk.create("guidance", "smc", ess_threshold=2.0)
    with pytest.raises(ConfigError, match="num_classes"):
        dk.create("conditioner", "label")


# ----------------------------------------------------------------------------- conditioners
def test_label_conditioner_null_dropout_and_embedding():
    lab = dk.create("conditioner", "label", num_classes=3, dropout=0.5)
    y = torch.tensor([0, 1, 2, 1] * 500)
    assert torch.equal(lab.null(y), torch.full_like(y, 3))
    dropped = lab.drop(y, _gen(0))
    frac = (dropped == 3).double().mean().item()
    assert abs(frac - 0.5) < 0.05
    assert torch.equal(dropped[dropped != 3], y[dropped != 3])
    assert torch.equal(lab(y), y)  # ids for networks that embed labels themselves
    emb = dk.create("conditioner", "label", num_classes=3, embed_dim=8)
    assert emb(y).shape == (2000, 8)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\]"):
        lab.drop(torch.tensor([0, 7]))


def test_array_conditioner_concat_film_and_null():
    cat = dk.create("conditioner", "array", dropout=0.5)
    c = torch.randn(400, 1, 8, 8) + 3
    assert cat(c) is c
    assert torch.equal(cat.null(c), torch.zeros_like(c))
    d = cat.drop(c, _gen(0))
    zero_rows = (d.flatten(1) == 0).all(1).double().mean().item()
    assert 0.4 < zero_rows < 0.6
    film = dk.create("conditioner", "array", mode="film", features=64, embed_dim=16)
    assert film(c).shape == (400, 16)
    with pytest.raises(ConfigError, match="features"):
        dk.create("conditioner", "array", mode="film")
    from diffusekit_guidance.conditioners import FiLM

    layer = FiLM(16, 5)
    h = torch.randn(3, 5, 4, 4)
    assert torch.equal(layer(h, torch.randn(3, 16)), h)  # identity at initialisation


def test_conditioner_dropout_enters_the_training_loss():
    pipe = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2, "num_classes": 3, "hidden": 32},
                       parameterization="eps", conditioner={"name": "label", "num_classes": 3, "dropout": 0.2},
                       guidance={"name": "cfg", "scale": 2.0})
    x0, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    loss = pipe.loss(x0, y, generator=_gen(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert pipe.network.label.weight.grad[3].abs().sum() > 0  # the null label was trained


# ----------------------------------------------------------------------------- CFG / CFG++
def test_cfg_w1_reproduces_the_conditional_distribution(data, cond_ref):
    labels, ref, floor = cond_ref
    pipe = conditional_pipeline(data, ddim(50), {"name": "cfg", "scale": 1.0})
    x = pipe.sample(N, cond=labels, generator=_gen(0))
    assert pipe.last_nfe == 50  # one batched call (2B rows) per step
    assert abs(mmd(x, ref)) < 4 * floor + 2e-3


def test_cfg_scale_raises_class_purity(data, cond_ref):
    labels, ref, _ = cond_ref
    purity = {}
    for w in (0.0, 1.0, 4.0):
        pipe = conditional_pipeline(data, ddim(30), {"name": "cfg", "scale": w})
        purity[w] = data.purity(pipe.sample(N, cond=labels, generator=_gen(0)), labels)
    true = data.purity(ref, labels)
    assert abs(purity[0.0] - 0.5) < 0.06  # w = 0: the unconditional model (balanced classes)
    assert abs(purity[1.0] - true) < 0.05
    assert purity[4.0] > purity[1.0] + 0.06 and purity[4.0] > 0.97


def test_cfg_batched_equals_two_calls_and_counts_nfe(data):
    labels = torch.tensor([0, 1, 1, 0])
    out = {}
    for batched in (True, False):
        pipe = conditional_pipeline(data, ddim(10), {"name": "cfg", "scale": 2.5, "batched": batched})
        out[batched] = pipe.sample(4, cond=labels, generator=_gen(3))
        assert pipe.last_nfe == (10 if batched else 20)
    torch.testing.assert_close(out[True], out[False], rtol=1e-5, atol=1e-6)


def test_cfg_scale_attribute_is_live_and_saved(data):
    pipe = conditional_pipeline(data, ddim(5), {"name": "cfg", "scale": 2.0})
    g = pipe.guidance[0]
    assert pipe.denoiser().scale == 2.0
    g.scale = 5.0
    assert pipe.denoiser().scale == 5.0 and pipe.config["guidance"][0]["scale"] == 5.0
    with pytest.raises(ConfigError):
        g.scale = -1.0


def test_cfg_needs_a_conditioner():
    gm = GaussianMixture.ring(4)
    with pytest.raises(CompatibilityError, match="conditioner"):
        dk.Pipeline(process="vp", network=MixtureOracle(gm, vp()), parameterization="x0",
                    sampler=ddim(5), guidance="cfg", sample_shape=(2,))


def test_cfgpp_step_equals_cfg_with_w_lambda_over_one_minus_r(data):
    """One DDIM step: a_s x0_lam + c_s eps_u == CFG at w = lam / (1 - r), r = (c_s/a_s)/(c_t/a_t)."""
    proc = vp()
    x = torch.randn(16, 2, dtype=torch.float64)
    t, s = torch.full((16,), 0.6, dtype=torch.float64), torch.full((16,), 0.5, dtype=torch.float64)
    y = torch.randint(0, 2, (16,))
    lam = 0.3
    net = ClassConditionalOracle(data, proc)
    lab = dk.create("conditioner", "label", num_classes=2)
    inner = dk.Denoiser(net, dk.create("parameterization", "x0"), proc, lab)
    pp = CFGPlusPlus(scale=lam).wrap(inner, lab)(x, t, y)
    (a_t, _, c_t), (a_s, _, c_s) = proc.coefficients(t[:1]), proc.coefficients(s[:1])
    step_pp = a_s * pp.x0 + c_s * pp.eps
    r = (c_s / a_s) / (c_t / a_t)
    cfg = CFG(scale=float(lam / (1 - r))).wrap(inner, lab)(x, t, y)
    step_cfg = a_s * cfg.x0 + c_s * cfg.eps
    torch.testing.assert_close(step_pp, step_cfg, rtol=1e-10, atol=1e-10)


def test_cfgpp_at_equivalent_w1_reproduces_the_conditional(data, cond_ref):
    labels, ref, floor = cond_ref
    pipe = conditional_pipeline(data, ddim(50), {"name": "cfg++", "equivalent_w": 1.0})
    x = pipe.sample(N, cond=labels, generator=_gen(0))
    assert abs(mmd(x, ref)) < 4 * floor + 2e-3
    cfg = conditional_pipeline(data, ddim(50), {"name": "cfg", "scale": 1.0})
    torch.testing.assert_close(x, cfg.sample(N, cond=labels, generator=_gen(0)), rtol=1e-4, atol=1e-4)
    strong = conditional_pipeline(data, ddim(50), {"name": "cfg++", "scale": 0.4})
    assert data.purity(strong.sample(N, cond=labels, generator=_gen(0)), labels) > data.purity(ref, labels) + 0.06


def test_cfgpp_with_stochastic_ddim_at_equivalent_w1_matches_the_conditional(data, cond_ref):
    """eta > 0: renoise with k = sqrt(c_s^2 - sigma^2); lambda_i = 1 - r_i still gives CFG at w = 1."""
    labels, ref, floor = cond_ref
    pipe = conditional_pipeline(data, ddim(50, eta=1.0), {"name": "cfg++", "equivalent_w": 1.0})
    assert pipe.sampler.stochastic
    x = pipe.sample(N, cond=labels, generator=_gen(0))
    assert abs(mmd(x, ref)) < 4 * floor + 2e-3
    cfg = conditional_pipeline(data, ddim(50, eta=1.0), {"name": "cfg", "scale": 1.0})
    torch.testing.assert_close(x, cfg.sample(N, cond=labels, generator=_gen(0)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["dpm-solver++", "deis"])
def test_cfgpp_inside_multistep_solvers_matches_the_conditional_at_10_nfe(data, cond_ref, name):
    """CFG++ runs inside the solvers through the shared re-noising step; at equivalent_w = 1 the
    per-step lambda_i = 1 - r_i (renoise_ratio: the guidance direction's total weight equals CFG's)
    samples the exact conditional at 10 NFE."""
    labels, ref, floor = cond_ref
    pipe = conditional_pipeline(data, dk.create("sampler", name, steps=10), {"name": "cfg++", "equivalent_w": 1.0})
    x = pipe.sample(N, cond=labels, generator=_gen(0))
    assert pipe.last_nfe == 10
    assert abs(mmd(x, ref)) < 2 * floor + 1e-3, (mmd(x, ref), floor)


@pytest.mark.parametrize("name", ["ddim", "dpm-solver++", "deis", "unipc"])
def test_cfgpp_runs_and_guides_with_every_gaussian_multistep_solver(data, cond_ref, name):
    labels, _, _ = cond_ref
    purity = {}
    for w in (1.0, 3.0):
        pipe = conditional_pipeline(data, dk.create("sampler", name, steps=10), {"name": "cfg++", "equivalent_w": w})
        x = pipe.sample(400, cond=labels[:400], generator=_gen(0))
        assert torch.isfinite(x).all() and pipe.last_nfe == 10
        purity[w] = data.purity(x, labels[:400])
    assert purity[3.0] > purity[1.0] + 0.04, purity


@pytest.mark.parametrize("sampler", [{"name": "euler-maruyama", "steps": 10}, {"name": "heun", "steps": 5}])
def test_cfgpp_refuses_samplers_that_do_not_renoise_with_eps(data, sampler):
    if sampler["name"] not in dk.components("sampler"):
        pytest.skip(f"{sampler['name']} is not installed")
    with pytest.raises(CompatibilityError, match="renoise_eps"):
        conditional_pipeline(data, sampler, "cfg++")


# ----------------------------------------------------------------------------- classifier guidance
def test_classifier_guidance_with_exact_classifier_is_the_conditional(data, cond_ref):
    labels, ref, floor = cond_ref
    proc = vp()
    g = ClassifierGuidance(classifier=ExactClassifier(data, proc), scale=1.0)
    assert g.needs_grad
    pipe = dk.Pipeline(process=proc, network=ClassConditionalOracle(data, proc), parameterization="x0",
                       sampler=ddim(50), guidance=g, sample_shape=(2,))
    x = pipe.sample(N, cond=labels, generator=_gen(0))
    assert abs(mmd(x, ref)) < 4 * floor + 2e-3
    assert not x.requires_grad
    g.config = g.Config(scale=4.0)
    assert data.purity(pipe.sample(N, cond=labels, generator=_gen(0)), labels) > data.purity(ref, labels) + 0.06


# ----------------------------------------------------------------------------- operators and DPS
def test_linear_operators_match_their_matrices():
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    mask = (torch.rand(1, 4, 4, generator=_gen(0)) > 0.5).float()
    for op in (Inpainting(mask), SuperResolution(2), GaussianBlur(3, 0.8)):
        A = op.matrix((1, 4, 4))
        torch.testing.assert_close(op.to(torch.float64)(x).flatten(1), x.flatten(1) @ A.T)
    const = torch.ones(2, 1, 4, 4)
    assert torch.allclose(SuperResolution(2)(const), torch.ones(2, 1, 2, 2))
    assert abs(float(GaussianBlur(5, 1.0).kernel.sum()) - 1.0) < 1e-6


def _inverse_problem():
    prior = GaussianMixture.ring(4, 1.0, 0.3)
    A = torch.tensor([[1.0, 0.5]])
    y = torch.tensor([0.6])
    sigma_y = 0.3
    return prior, A, y, sigma_y, linear_gaussian_posterior(prior, A, y, sigma_y)


def test_dps_step_mode_is_algorithm_1_after_the_sampler_step():
    """mode='step': x_next = sampler step - 2 zeta grad |y - A x0_hat| (zeta_i = zeta'/|r|)."""
    prior, A, y, sy, _ = _inverse_problem()
    proc = vp()
    op = MatrixOperator(A)
    x = torch.randn(5, 2)
    t = torch.full((5,), 0.5)
    dps = DPS(operator=op, measurement=y, scale=0.3)
    inner = dk.Denoiser(MixtureOracle(prior, proc), dk.create("parameterization", "x0"), proc)
    pred = dps.wrap(inner)(x, t)
    x_in = x.clone().requires_grad_(True)
    r = (y - op(inner(x_in, t).x0)).norm(dim=1).sum()
    (grad,) = torch.autograd.grad(r, x_in)
    torch.testing.assert_close(pred.get("dps_grad"), 0.6 * grad)
    torch.testing.assert_close(pred.x0, inner(x, t).x0)  # the prediction itself is unguided
    stepped = torch.randn(5, 2)
    torch.testing.assert_close(dps.on_step(stepped, {"prediction": pred}), stepped - 0.6 * grad)


def test_exact_posterior_formula_against_bayes_rule():
    prior, A, y, sy, post = _inverse_problem()
    xs = torch.randn(7, 2, dtype=torch.float64)
    lik = -0.5 * ((y.double() - xs @ A.double().T) ** 2).sum(1) / sy ** 2
    log_post = torch.logsumexp(torch.stack([
        torch.log(w) + torch.distributions.MultivariateNormal(m, covariance_matrix=c).log_prob(xs)
        for m, c, w in zip(post.means, post.covs, post.weights)]), 0)
    diff = log_post - (prior.log_prob(xs) + lik)
    torch.testing.assert_close(diff, diff[:1].expand(7), rtol=0, atol=1e-9)  # equal up to log p(y)


def test_dps_and_smc_on_a_linear_gaussian_inverse_problem():
    prior, A, y, sy, post = _inverse_problem()
    ref = post.sample(N, _gen(1))
    proc = vp()
    op = MatrixOperator(A)
    res = {}
    for name, g in (("dps", DPS(operator=op, measurement=y, noise=sy, mode="score")),
                    ("smc", SMC(target="posterior", operator=op, measurement=y, noise=sy))):
        pipe = dk.Pipeline(process=proc, network=MixtureOracle(prior, proc), parameterization="x0",
                           sampler={"name": "euler-maruyama", "steps": 200}, guidance=g, sample_shape=(2,))
        x = pipe.sample(N, generator=_gen(0))
        assert pipe.last_nfe == 200
        res[name] = mmd(x, ref)
    unguided = mmd(prior.sample(N, _gen(5)), ref)
    assert res["dps"] < unguided / 2  # DPS moves towards the posterior ...
    assert res["smc"] < res["dps"] / 3  # ... twisted SMC corrects the DPS approximation
    assert res["smc"] < 0.02


# ----------------------------------------------------------------------------- SMC / Feynman-Kac
def test_resampling_keeps_healthy_populations_and_follows_weights():
    lw = torch.zeros(8, dtype=torch.float64)
    flat, new, need = systematic_resample(lw, 4, 0.5, _gen(0))
    assert torch.equal(flat, torch.arange(8)) and not need.any()
    lw = torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    flat, new, need = systematic_resample(lw, 4, 0.5, _gen(0))
    assert need.tolist() == [True, False]
    assert flat[:4].tolist() == [3, 3, 3, 3] and flat[4:].tolist() == [4, 5, 6, 7]
    assert torch.equal(new[:4], torch.zeros(4, dtype=torch.float64)) and torch.equal(new[4:], lw[4:])


def test_smc_annealing_a_gaussian_gives_variance_over_beta():
    gm = GaussianMixture([[0.5, 0.0]], [1.0])
    proc = vp()
    for beta in (2.0, 0.5):
        g = SMC(target="anneal", scale=beta)
        pipe = dk.Pipeline(process=proc, network=MixtureOracle(gm, proc), parameterization="x0",
                           sampler={"name": "euler-maruyama", "steps": 100}, guidance=g, sample_shape=(2,))
        x = pipe.sample(2000, generator=_gen(0)).double()
        assert torch.allclose(x.var(0), torch.full((2,), 1 / beta, dtype=torch.float64), rtol=0.12)
        assert torch.allclose(x.mean(0), torch.tensor([0.5, 0.0], dtype=torch.float64), atol=0.1)


def test_smc_product_of_two_mixtures_matches_the_closed_form():
    p1 = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], 0.6, [0.3, 0.7])
    p2 = GaussianMixture([[1.0, -1.0], [1.0, 1.0]], 0.6)
    prod = product_of_mixtures(p1, p2)
    ref = prod.sample(N, _gen(1))
    floor = mmd_noise_floor(lambda n, seed: prod.sample(n, _gen(100 + seed)), N, repeats=3)
    proc = vp()
    out = {}
    for name, thr, final, group in (("smc", 0.5, True, 100), ("naive", 0.0, False, None)):
        # 10 populations of 100 particles: mode proportions vary less than in one population of 1000
        g = SMC(expert=MixtureOracle(p2, proc), target="product", ess_threshold=thr, final_resample=final,
                group_size=group)
        pipe = dk.Pipeline(process=proc, network=MixtureOracle(p1, proc), parameterization="x0",
                           sampler={"name": "euler-maruyama", "steps": 50}, guidance=g, sample_shape=(2,))
        out[name] = mmd(pipe.sample(N, generator=_gen(0)), ref)
        assert pipe.last_nfe == 100  # two experts per step
    assert out["smc"] < 3 * floor + 1e-3
    assert out["naive"] > 3 * out["smc"]  # summing scores alone is biased


def test_smc_cfg_target_at_w1_has_zero_weights_and_is_the_conditional(data, cond_ref):
    labels, ref, floor = cond_ref
    g = SMC(target="cfg", scale=1.0)
    pipe = conditional_pipeline(data, {"name": "euler-maruyama", "steps": 200}, g)
    x = pipe.sample(N, cond=labels, generator=_gen(0))
    copies = pipe.last_guidance  # the call's bound copies hold its results
    assert abs(mmd(x, ref)) < 4 * floor + 2e-3
    assert len(copies) == 1 and copies[0] is not g
    assert int(copies[0].num_resampled) == 1  # only the forced final resampling (weights stayed uniform)
    assert g.num_resampled is None and g.log_weights is None  # the shared object holds no run state


def test_smc_refuses_deterministic_samplers(data):
    with pytest.raises(CompatibilityError, match="stochastic"):
        conditional_pipeline(data, {"name": "ode", "method": "euler", "steps": 10}, SMC(target="cfg"))


# ----------------------------------------------------------------------------- SVDD
def test_svdd_raises_a_non_differentiable_reward_without_gradients():
    gm = GaussianMixture.ring(8, 1.5, 0.1)
    proc = vp()
    seen = {"grad_enabled": False, "requires_grad": False}

    def reward(x0):  # black box: numpy, a step function
        seen["grad_enabled"] |= torch.is_grad_enabled()
        seen["requires_grad"] |= x0.requires_grad
        return (x0.numpy()[:, 0] > 0.5).astype(np.float64)

    means = {}
    for m in (1, 8):
        g = SVDD(reward=reward, particles=m)
        pipe = dk.Pipeline(process=proc, network=MixtureOracle(gm, proc), parameterization="x0",
                           sampler={"name": "euler-maruyama", "steps": 50}, guidance=g, sample_shape=(2,))
        x = pipe.sample(300 * m, generator=_gen(0))
        assert pipe.last_nfe == 50  # the value evaluation of the kept candidate is the next step's call
        reps = g.representatives(x)
        assert reps.shape == (300, 2)
        means[m] = float((reps[:, 0] > 0.5).double().mean())
    assert abs(means[1] - 3 / 8) < 0.07  # unguided: 3 of 8 modes have x > 0.5
    assert means[8] > means[1] + 0.3
    assert not seen["grad_enabled"] and not seen["requires_grad"]


def test_svdd_refuses_deterministic_samplers():
    gm = GaussianMixture.ring(4)
    with pytest.raises(CompatibilityError, match="stochastic"):
        dk.Pipeline(process="vp", network=MixtureOracle(gm, vp()), parameterization="x0",
                    sampler=ddim(5), guidance=SVDD(reward=lambda x: x[:, 0]), sample_shape=(2,))


def test_svdd_on_a_masked_discrete_process():
    """Discrete (masked) SVDD: x0_hat = argmax logits at masked positions; black-box integer reward."""
    pytest.importorskip("diffusekit_masked")
    from diffusekit_masked.oracle import JointOracle

    g = torch.Generator().manual_seed(3)
    joint = (torch.rand(27, generator=g, dtype=torch.float64) + 0.2).view(3, 3, 3)
    joint = joint / joint.sum()

    def zeros(x0):  # number of token-0 positions, computed in numpy
        return (x0.numpy() == 0).sum(1).astype(np.float64)

    out = {}
    for m in (1, 6):
        svdd = SVDD(reward=zeros, particles=m)
        pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=JointOracle(joint),
                           sampler={"name": "ancestral", "steps": 12, "cache": False}, guidance=svdd)
        x = svdd.representatives(pipe.sample(400 * m, generator=_gen(0)))
        assert x.shape == (400, 3) and int(x.max()) < 3  # no mask left
        out[m] = zeros(x).mean()
    exact = float((torch.stack(torch.meshgrid(*[torch.arange(3)] * 3, indexing="ij"), -1) == 0).sum(-1).double()
                  .mul(joint).sum())
    assert abs(out[1] - exact) < 0.12
    assert out[6] > out[1] + 0.5


# ----------------------------------------------------------------------------- bound copies
def _unchanged(g: Guidance, before: dict) -> bool:
    now = vars(g)
    return now.keys() == before.keys() and all(now[k] is v for k, v in before.items())


def test_bind_returns_a_bound_copy_and_check_fit_changes_nothing(data):
    g = CFGPlusPlus(equivalent_w=1.0)
    before = dict(vars(g))
    pipe = conditional_pipeline(data, ddim(10), g)  # runs check_fit
    assert _unchanged(g, before)
    bound = g.bind(torch.tensor([0, 1]), pipe.fit())
    assert type(bound) is CFGPlusPlus and bound is not g
    assert bound._grid.shape == (11,) and g._grid is None
    assert _unchanged(g, before)
    with pytest.raises(ConfigError, match="bound"):  # the unbound object has no grid to read
        g.lam(torch.full((2,), 0.5), pipe.process)


def _em(steps: int) -> dict:
    return {"name": "euler-maruyama", "steps": steps}


_SHARED = {
    "cfg": (lambda: CFG(scale=2.0), lambda: [ddim(6), ddim(9, eta=1.0)]),
    "cfg++": (lambda: CFGPlusPlus(equivalent_w=2.0), lambda: [ddim(6), ddim(9, eta=1.0)]),
    "smc": (lambda: SMC(target="cfg", scale=2.0, group_size=4), lambda: [_em(6), _em(9)]),
    "svdd": (lambda: SVDD(reward=lambda x: x[:, 0], particles=2, temperature=0.5), lambda: [_em(6), _em(9)]),
}


@pytest.mark.parametrize("kind", sorted(_SHARED))
def test_one_guidance_object_shared_by_two_pipelines_is_not_mutated(data, kind):
    """Sampling binds a copy per call: the shared object's attributes stay the same objects,
    and each pipeline samples exactly as with its own guidance object, in any call order."""
    make, samplers = _SHARED[kind]
    shared = make()
    before = dict(vars(shared))
    pipes = [conditional_pipeline(data, s, shared) for s in samplers()]
    own = [conditional_pipeline(data, s, make()) for s in samplers()]
    labels = torch.tensor([0, 1] * 4)

    def run(pipe, seed):
        return pipe.sample(8, cond=labels, generator=_gen(seed))

    first = [run(p, i) for i, p in enumerate(pipes)]
    again = [run(pipes[i], i) for i in reversed(range(len(pipes)))][::-1]
    ref = [run(p, i) for i, p in enumerate(own)]
    for a, b, r in zip(first, again, ref):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, r, rtol=0, atol=0)
    assert all(p.guidance[0] is shared for p in pipes)
    assert _unchanged(shared, before), sorted(set(vars(shared)) ^ set(before))


class _LabelTokens(Network):
    """Time-agnostic logits: label y in {0, 1} gives p(token y) = 0.6 at every position, the null
    label (2) the uniform distribution over 3 tokens."""

    time_conditioned = False

    def forward(self, x_t, t, cond=None):
        probs = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
        lab = cond if cond is not None else torch.full((x_t.shape[0],), 2)
        return probs[lab.long()].log().float()[:, None, :].expand(-1, x_t.shape[1], -1)


def test_cfg_on_logits_of_a_masked_process_matches_the_tilted_closed_form():
    """Positions are independent, so CFG's p_u^(1-w) p_c^w is exact: p(y) = 0.6^w 3^(w-1) / Z."""
    pytest.importorskip("diffusekit_masked")
    labels = torch.tensor([0, 1] * 300)
    for w, expect in ((1.0, 0.6), (2.0, 0.36 / 0.44)):
        pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=_LabelTokens(),
                           sampler={"name": "ancestral", "steps": 8, "cache": False},
                           conditioner={"name": "label", "num_classes": 2}, guidance={"name": "cfg", "scale": w},
                           sample_shape=(4,))
        x = pipe.sample(len(labels), cond=labels, generator=_gen(0))
        frac = (x == labels[:, None]).double().mean().item()
        assert abs(frac - expect) < 0.035, (w, frac, expect)


def test_gaussian_guidance_refuses_discrete_processes():
    pytest.importorskip("diffusekit_masked")
    with pytest.raises(CompatibilityError, match="AdditiveGaussian"):
        dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=_LabelTokens(),
                    sampler={"name": "ancestral", "steps": 4}, guidance=DPS(operator=lambda x: x, measurement=0.0),
                    sample_shape=(4,))


@pytest.mark.parametrize("mode", ["concat", "film"])
def test_cfg_with_array_conditions_interpolates_conditional_and_null(mode):
    """eps_w = eps_u + w (eps_c - eps_u) exactly, for array conditions (concat or FiLM vectors)."""
    torch.manual_seed(0)
    cond_spec = {"name": "array", "mode": mode, "features": 6, "embed_dim": 8}
    if mode == "concat":
        cond_spec = {"name": "array"}
    net = {"name": "mlp", "dim": 2, "hidden": 32, "cond_dim": 6 if mode == "concat" else 8}
    pipe = dk.Pipeline(process="vp", network=net, parameterization="eps", conditioner=cond_spec,
                       guidance={"name": "cfg", "scale": 2.5}, sampler="euler-maruyama")
    x, t, c = torch.randn(5, 2), torch.full((5,), 0.4), torch.randn(5, 6)
    inner = pipe.denoiser(guided=False)
    e_c, e_u = inner(x, t, c).eps, inner(x, t, torch.zeros_like(c)).eps
    torch.testing.assert_close(pipe.denoiser()(x, t, c).eps, e_u + 2.5 * (e_c - e_u), rtol=1e-5, atol=1e-6)


def test_guided_pipeline_save_load_round_trip(tmp_path):
    # embed_dim > 0: the conditioner owns the label embedding, the mlp receives vectors (cond_dim)
    pipe = dk.Pipeline(process="vp", network={"name": "mlp", "dim": 2, "hidden": 16, "cond_dim": 4},
                       parameterization="eps", conditioner={"name": "label", "num_classes": 3, "embed_dim": 4},
                       guidance={"name": "cfg", "scale": 2.0}, sampler={"name": "ddim-renoise", "steps": 3})
    pipe.guidance[0].scale = 3.5
    pipe.save(tmp_path / "run")
    back = dk.Pipeline.load(tmp_path / "run")
    assert back.guidance[0].scale == 3.5 and back.sampler.config.steps == 3
    torch.testing.assert_close(back.conditioner.embedding.weight, pipe.conditioner.embedding.weight)
    y = torch.tensor([0, 2, 1])
    torch.testing.assert_close(back.sample(3, cond=y, generator=[1, 2, 3]), pipe.sample(3, cond=y, generator=[1, 2, 3]))
