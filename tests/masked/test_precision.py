"""Categorical sampling precision (docs/plugins/masked.md): the exponential race in
float32 cannot produce a category with p_i / p_max < 2.59e-9; float64 moves this to 9.3e-18."""

import math

import pytest
import torch
from scipy import stats

from diffusekit_masked.categorical import (extreme_uniforms, sample_categorical, sample_from_uniforms,
                                           unreachable_threshold)


def test_thresholds_match_the_closed_form():
    assert unreachable_threshold("float32") == pytest.approx(2.59e-9, rel=2e-3)
    assert unreachable_threshold("float64") == pytest.approx(9.3e-18, rel=2e-3)
    # closed form: E = 1e-10 - log(u + 1e-10); at u_max = 1 - 2^-24 the inner 1e-10 is rounded
    # away in float32, so E_min = 1e-10 - log(1 - 2^-24); E_max at u = 0
    e_min = 1e-10 - math.log1p(-2.0 ** -24)
    e_max = 1e-10 - math.log(1e-10)
    assert unreachable_threshold("float32") == pytest.approx(e_min / e_max, rel=1e-3)


@pytest.mark.parametrize("precision,below,above", [("float32", 2.0e-9, 3.0e-9), ("float64", 8e-18, 1.1e-17)])
def test_category_below_threshold_never_wins(precision, below, above):
    """Give the small category its best possible uniforms: it still loses below the threshold."""
    u = extreme_uniforms(2, favoured=1, precision=precision)
    assert int(sample_from_uniforms(torch.tensor([1.0, below], dtype=torch.float64), u)) == 0
    assert int(sample_from_uniforms(torch.tensor([1.0, above], dtype=torch.float64), u)) == 1


def test_zipf_conditional_loses_entropy_in_float32():
    """A Zipf-like p(v | x_t) (V = 50257) inside one step of a 10000-step ancestral sampler at
    t = 0.5: the stay-masked probability is p_max, so in float32 the tail can never be drawn.
    Each token is raced against "stay masked" with its best uniforms (a necessary condition to
    be sampled at all); the reachable set loses 12.7 % of the mass and ~1 nat of entropy."""
    vocab, steps, t = 50257, 10_000, 0.5
    p = torch.arange(1, vocab + 1, dtype=torch.float64) ** -1.1
    p /= p.sum()
    unmask = (1 / steps) / t                         # linear schedule, t -> t - 1/steps
    probs = torch.stack([torch.full_like(p, 1 - unmask), unmask * p], 1)  # (V, 2): stay, token
    h_full = float(-(p * p.log()).sum())
    out = {}
    for precision in ("float32", "float64"):
        u = extreme_uniforms(2, favoured=1, precision=precision).expand(vocab, 2)
        reachable = sample_from_uniforms(probs, u) == 1
        q = p[reachable] / p[reachable].sum()
        out[precision] = (float(p[~reachable].sum()), float(-(q * q.log()).sum()))
    mass32, h32 = out["float32"]
    mass64, h64 = out["float64"]
    assert mass64 == 0.0 and h64 == pytest.approx(h_full, abs=1e-12)
    assert mass32 == pytest.approx(0.127, abs=0.002)
    assert h_full - h32 > 0.9
    # the same cut predicted from the threshold alone
    thr = unreachable_threshold("float32")
    assert float(p[unmask * p / (1 - unmask) < thr].sum()) == pytest.approx(mass32, rel=1e-3)


def test_float64_race_samples_the_categorical_and_is_batch_invariant():
    probs = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625], dtype=torch.float64)
    draws = sample_categorical(probs.expand(40000, 5), torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=5).double()
    assert stats.chisquare(counts.numpy(), (probs * 40000).numpy()).pvalue > 1e-3
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    a = sample_categorical(probs.expand(4, 3, 5), gens)
    b = sample_categorical(probs.expand(2, 3, 5), [torch.Generator().manual_seed(s) for s in (2, 3)])
    assert torch.equal(a[2:], b)
