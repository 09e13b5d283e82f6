"""Masked process: schedules, perturbation law, prior, state checks, composition checks."""

import math

import pytest
import torch
from scipy import stats

import diffusekit as dk
from diffusekit.errors import CompatibilityError, ConfigError, ShapeError
from diffusekit_masked.process import Masked
from diffusekit_masked.schedules import SCHEDULES, MaskSchedule


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_ends_inverse_derivative_weight(name):
    s = MaskSchedule(name, exponent=2.0, eps=1e-3)
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    assert float(s.alpha(torch.zeros(1, dtype=torch.float64))) == 1.0
    end = float(s.alpha(torch.ones(1, dtype=torch.float64)))
    assert end == pytest.approx(1e-3 if name == "log-linear" else 0.0, abs=1e-15)
    torch.testing.assert_close(s.inverse(s.alpha(t)), t, atol=1e-12, rtol=0)
    h = 1e-6
    fd = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(s.dalpha(t), fd, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(s.weight(t), -s.dalpha(t) / (1 - s.alpha(t)), atol=1e-9, rtol=1e-9)


def test_perturb_masks_with_probability_one_minus_alpha():
    proc = Masked(vocab_size=5, schedule="cosine")
    x0 = torch.randint(0, 5, (4, 20000), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    pert = proc.perturb(x0, t, generator=torch.Generator().manual_seed(1))
    frac = (pert.x_t == proc.mask_id).double().mean(1)
    expect = 1 - proc.alpha(t.double())
    se = torch.sqrt(expect * (1 - expect) / 20000)
    assert torch.all((frac - expect).abs() < 5 * se)
    keep = pert.x_t != proc.mask_id
    assert torch.equal(pert.x_t[keep], x0[keep])
    assert torch.equal(pert.extra["mask"], ~keep)


def test_perturb_is_batch_invariant_with_per_sample_generators():
    proc = Masked(vocab_size=7)
    x0 = torch.randint(0, 7, (4, 16), generator=torch.Generator().manual_seed(0))
    t = torch.full((4,), 0.5)
    a = proc.perturb(x0, t, generator=[10, 11, 12, 13]).x_t
    b = proc.perturb(x0[2:], t[2:], generator=[12, 13]).x_t
    assert torch.equal(a[2:], b)


def test_prior_is_all_mask_and_training_times_are_stratified():
    proc = Masked(vocab_size=3)
    x = proc.prior(5, (7,))
    assert x.dtype == torch.long and torch.all(x == 3)
    t = proc.sample_time(8, torch.Generator().manual_seed(0))
    gaps = torch.sort(t).values.diff()
    torch.testing.assert_close(gaps, torch.full_like(gaps, (1 - proc.t_min) / 8))


def test_check_state_errors_name_the_problem():
    proc = Masked(vocab_size=3)
    with pytest.raises(ShapeError, match="integer"):
        proc.check_state(torch.zeros(2, 3), loc="x0")
    with pytest.raises(ShapeError, match=r"\[0, 2\].*no mask"):
        proc.check_state(torch.tensor([[0, 3, 1]]), loc="x0")
    proc.check_state(torch.tensor([[0, 3, 1]]), loc="x")  # masks are fine in a sampling state
    with pytest.raises(ShapeError, match="batch, length"):
        proc.check_state(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="vocab_size"):
        dk.create("process", "masked", vocab_size=0)
    with pytest.raises(ConfigError, match="schedule"):
        dk.create("process", "masked", vocab_size=3, schedule="sqrt")


def test_pipeline_refuses_mismatched_samplers(oracle):
    with pytest.raises(CompatibilityError, match="first-hitting"):
        dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=oracle, sampler="euler-maruyama")
    mlp = dk.create("network", "mlp", dim=2)
    with pytest.raises(CompatibilityError, match="Absorbing"):
        dk.Pipeline(process="vp", network=mlp, parameterization="eps", sampler="first-hitting")
    with pytest.raises(CompatibilityError, match="Absorbing"):
        dk.Pipeline(process="vp", network=mlp, parameterization="logits")
    pipe = dk.Pipeline(process={"name": "masked", "vocab_size": 3}, network=oracle)
    assert type(pipe.sampler).__name__ == "FirstHitting"
    assert type(pipe.parameterization).__name__ == "Logits"


def test_masked_declares_absorbing_and_its_components_require_it(oracle):
    """The masked process is Absorbing (and has an ELBO); its parameterization and samplers
    rely on the mask state, so a Discrete process without one is refused."""
    from diffusekit.fit import Fit, check_fit
    from diffusekit.process import Absorbing, Discrete, ForwardProcess, Likelihood, Perturbed

    proc = dk.create("process", "masked", vocab_size=3)
    assert isinstance(proc, Absorbing) and isinstance(proc, Likelihood) and proc.mask_id == 3

    class UniformNoise(ForwardProcess, Discrete):  # tokens resampled uniformly: no absorbing state
        vocab_size = 3

        def alpha(self, t):
            return 1 - t

        def perturb(self, x0, t, cond=None, generator=None):
            return Perturbed(x_t=x0, t=t)

        def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
            return torch.zeros((n, *shape), dtype=torch.long, device=device)

    logits = dk.create("parameterization", "logits")
    for name in ("ancestral", "first-hitting", "confidence"):
        sampler = dk.create("sampler", name)
        check_fit(Fit(proc, logits, sampler))
        with pytest.raises(CompatibilityError, match="Absorbing"):
            check_fit(Fit(UniformNoise(), logits, sampler))


def test_first_hitting_time_is_max_of_uniforms():
    """docs/plugins/masked.md: t u^{1/n} has the law of the max of n U(0, t) draws."""
    g = torch.Generator().manual_seed(0)
    t, n, m = 0.8, 5, 20000
    s = t * torch.rand(m, generator=g, dtype=torch.float64) ** (1 / n)
    # CDF of the max: (s / t)^n
    res = stats.kstest(s.numpy(), lambda v: (v / t) ** n)
    assert res.pvalue > 1e-3
    proc = Masked(vocab_size=3, schedule="cosine")
    # general schedule: alpha(s) = 1 - (1 - alpha_t) u^{1/n}  <=>  P(S <= s) = ((1 - alpha_s)/(1 - alpha_t))^n
    tt = torch.tensor(0.8, dtype=torch.float64)
    u = torch.rand(m, generator=g, dtype=torch.float64)
    s = proc.t_of_alpha(1 - (1 - proc.alpha(tt)) * u ** (1 / n))
    cdf = lambda v: ((1 - proc.alpha(torch.as_tensor(v))) / (1 - proc.alpha(tt))).numpy() ** n
    assert stats.kstest(s.numpy(), cdf).pvalue > 1e-3
    assert float(s.max()) <= 0.8 + 1e-12 and math.isfinite(float(s.min()))


def test_subs_rules():
    """SUBS: mask never predicted, unmasked positions copy x_t, masked rows are a softmax."""
    from diffusekit_masked.parameterization import subs_log_probs

    g = torch.Generator().manual_seed(0)
    x_t = torch.tensor([[0, 3, 2], [3, 3, 1]])
    raw = torch.randn(2, 3, 4, generator=g)
    logp = subs_log_probs(raw, x_t, mask_id=3)
    p = logp.exp()
    assert torch.all(p[..., 3] == 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3))
    assert p[0, 0, 0] == 1 and p[0, 2, 2] == 1 and p[1, 2, 1] == 1
    torch.testing.assert_close(logp[0, 1, :3], torch.log_softmax(raw[0, 1, :3], -1))
    # a network that predicts data tokens only (no mask column) gives the same result
    torch.testing.assert_close(subs_log_probs(raw[..., :3], x_t, mask_id=3), logp)
    with pytest.raises(ShapeError, match="vocab_size"):
        subs_log_probs(torch.randn(2, 3, 7), x_t, mask_id=3)
