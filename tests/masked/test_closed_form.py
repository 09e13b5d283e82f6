"""Closed-form checks on a toy joint (L = 3, V = 3) with the exact conditionals as network
(docs/plugins/masked.md)."""

import math

import pytest
import torch
from scipy import stats

import diffusekit as dk
from diffusekit_masked.oracle import JointOracle, all_sequences, entropy, sequence_index

N = 12000


def _pipe(oracle, sampler, **kw):
    return dk.Pipeline(process={"name": "masked", "vocab_size": 3, **kw}, network=oracle, sampler=sampler)


def _counts(x):
    return torch.bincount(sequence_index(x, 3), minlength=27).double()


def _chi2_pvalue(counts, probs):
    expected = probs.flatten() * counts.sum()
    return stats.chisquare(counts.numpy(), expected.numpy()).pvalue


@pytest.mark.parametrize("sampler", [
    {"name": "first-hitting"},
    {"name": "first-hitting", "precision": "float32"},
    {"name": "ancestral", "steps": 64},
])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_exact_samplers_match_the_joint(oracle, joint, sampler, schedule):
    pipe = _pipe(oracle, sampler, schedule=schedule)
    x = pipe.sample(N, generator=torch.Generator().manual_seed(7))
    assert pipe.last_nfe <= (3 if sampler["name"] == "first-hitting" else sampler["steps"])
    assert _chi2_pvalue(_counts(x), joint) > 1e-3


def test_first_hitting_uses_exactly_L_calls_and_respects_given_tokens(oracle, joint):
    pipe = _pipe(oracle, "first-hitting")
    pipe.sample(10, generator=torch.Generator().manual_seed(0))
    assert pipe.last_nfe == 3
    # prefix conditioning: x^1 fixed to 2 -> samples follow p(x^2, x^3 | x^1 = 2) with 2 calls
    x_init = torch.tensor([[2, 3, 3]]).repeat(N, 1)
    x = pipe.sample(N, x_init=x_init, generator=torch.Generator().manual_seed(1))
    assert pipe.last_nfe == 2 and torch.all(x[:, 0] == 2)
    cond = joint[2] / joint[2].sum()
    counts = torch.bincount(x[:, 1] * 3 + x[:, 2], minlength=9).double()
    assert _chi2_pvalue(counts, cond) > 1e-3


def test_one_step_ancestral_gives_the_product_of_marginals(oracle, joint):
    """Few-step ancestral factorises: with one step every token is drawn from its marginal."""
    pipe = _pipe(oracle, {"name": "ancestral", "steps": 1})
    x = pipe.sample(N, generator=torch.Generator().manual_seed(3))
    m = [joint.sum(dim=tuple(d for d in range(3) if d != i)) for i in range(3)]
    product = m[0][:, None, None] * m[1][None, :, None] * m[2][None, None, :]
    assert _chi2_pvalue(_counts(x), product) > 1e-3
    assert _chi2_pvalue(_counts(x), joint) < 1e-6  # and is visibly not the joint


def test_ancestral_cache_is_exact_and_saves_calls(oracle):
    a = _pipe(oracle, {"name": "ancestral", "steps": 50, "cache": True})
    b = _pipe(oracle, {"name": "ancestral", "steps": 50, "cache": False})
    xa = a.sample(1, generator=torch.Generator().manual_seed(5))
    xb = b.sample(1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(xa, xb)
    assert b.last_nfe == 50 and a.last_nfe <= 1 + 3  # one call, then one after each change


@pytest.mark.parametrize("sampler", ["first-hitting", {"name": "ancestral", "steps": 20},
                                     {"name": "confidence", "steps": 2, "choice_noise": 1.0}])
def test_per_sample_generators_give_batch_invariant_samples(oracle, sampler):
    pipe = _pipe(oracle, sampler)
    full = pipe.sample(6, generator=[torch.Generator().manual_seed(s) for s in range(6)])
    part = pipe.sample(2, generator=[torch.Generator().manual_seed(s) for s in (4, 5)])
    assert torch.equal(full[4:], part)
    assert not torch.any(full == 3)


def test_confidence_sampler_unmasks_on_schedule(oracle):
    pipe = _pipe(oracle, {"name": "confidence", "steps": 3, "temperature": 0.0})
    res = pipe.sample(4, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    masked = [int((x == 3).sum(1).max()) for x in res.trajectory]
    assert masked == [2, 1, 0] and res.nfe == 3
    # temperature 0 and no choice noise: the most confident token is revealed first
    first = res.trajectory[0][0]
    pos = int((first != 3).nonzero()[0])
    logp = oracle(torch.full((1, 3), 3), torch.ones(1))[0, :, :3]
    assert pos == int(logp.max(-1).values.argmax())


def test_nelbo_of_the_true_model_is_the_entropy(oracle, joint):
    """NELBO(model = data) = H(joint): exact via subsets, and by Monte Carlo over t."""
    pipe = _pipe(oracle, "first-hitting")
    seqs = all_sequences(3, 3)
    p = joint.flatten()
    nelbo = -(pipe.log_likelihood(seqs, method="subsets") * p).sum()
    assert float(nelbo) == pytest.approx(entropy(joint), abs=1e-10)
    # Monte Carlo over time on the exact distribution (weights p): unbiased, within 4 SE
    rep = seqs.repeat(40, 1)
    vals = -pipe.log_likelihood(rep, num_samples=16, generator=torch.Generator().manual_seed(0))
    vals = vals.view(40, 27)
    means = (vals * p).sum(1)
    se = means.std() / math.sqrt(40)
    assert abs(float(means.mean()) - entropy(joint)) < 4 * float(se) + 1e-3


@pytest.mark.parametrize("schedule", ["linear", "log-linear", "polynomial"])
def test_nelbo_L1_equals_entropy_of_pi(schedule):
    pi = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 4, "schedule": schedule, "exponent": 2.0},
                       network=JointOracle(pi), sampler="first-hitting")
    x = torch.arange(4)[:, None]
    exact = -(pipe.log_likelihood(x, method="subsets") * pi).sum()
    assert float(exact) == pytest.approx(entropy(pi), abs=1e-12)
    mc = -pipe.log_likelihood(x.repeat(2000, 1), num_samples=8, generator=torch.Generator().manual_seed(0))
    mc = (mc.view(2000, 4).mean(0) * pi).sum()
    assert float(mc) == pytest.approx(entropy(pi), rel=0.03)


@pytest.mark.parametrize("time_agnostic", [False, True])
def test_training_loss_is_an_unbiased_nelbo_per_token(oracle, joint, time_agnostic):
    """E[loss] = NELBO / L = H / L for the exact model (both loss forms)."""
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=oracle,
                       parameterization={"name": "logits", "time_agnostic": time_agnostic})
    g = torch.Generator().manual_seed(0)
    data = all_sequences(3, 3)[torch.multinomial(joint.flatten(), 200 * 64, replacement=True, generator=g)]
    losses = torch.stack([pipe.loss(b, generator=g) for b in data.view(200, 64, 3)]).double()
    se = losses.std() / math.sqrt(len(losses))
    assert abs(float(losses.mean()) - entropy(joint) / 3) < 4 * float(se)
