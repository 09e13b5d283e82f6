"""The sampler contract: abstract methods are enforced at construction; the Gaussian solvers'
one step function runs on host rows and on tensor rows (the ONNX Scan body) alike; init_carry
receives the process and the condition."""

import pytest
import torch

import diffusekit as dk
from diffusekit.sampler import Plan, Sampler, SamplerConfig, StepSampler, TabulatedSampler, TimeGrid

from solver_helpers import make_pipe


def test_abstract_methods_are_enforced_at_construction():
    class NoStep(StepSampler):
        Config = SamplerConfig

        def build_plan(self, process):
            return Plan(torch.linspace(1, 0, 3))

    with pytest.raises(TypeError, match="abstract.*step"):
        NoStep()

    class NoSample(Sampler):
        pass

    with pytest.raises(TypeError, match="abstract.*sample"):
        NoSample()

    class NoRow(TabulatedSampler):
        Config = SamplerConfig

        def build_plan(self, process):
            return Plan(torch.linspace(1, 0, 3))

    with pytest.raises(TypeError, match="coefficients_type|step_row"):
        NoRow()

    class NoTimes(TimeGrid):
        pass

    with pytest.raises(TypeError, match="times"):
        NoTimes()


SOLVERS = [("ddim", {}), ("dpm-solver++", {"variant": "3M"}), ("dpm-solver++", {"variant": "2S"}),
           ("dpm-solver", {"order": 3}), ("deis", {}), ("unipc", {}), ("heun", {}), ("euler", {})]


@pytest.mark.parametrize("name,params", SOLVERS, ids=[f"{n}-{p}" for n, p in SOLVERS])
def test_step_row_on_tensor_rows_equals_the_python_loop(name, params, ring):
    """The Scan body feeds 0-d tensor rows (Coefficients.from_row of the stacked table) to the same
    step_row as the Python loop's host rows: the results agree to float64 round-off."""
    proc = dk.create("process", "vp")
    sampler = dk.create("sampler", name, steps=6, **params)
    pipe = make_pipe(proc, ring, sampler)
    x = proc.prior(5, (2,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = pipe.sample(5, x_init=x)
    plan = sampler.plan(proc, x)
    cls = sampler.coefficients_type()
    table = cls.table(sampler.build_plan(proc).rows)
    den = pipe.denoiser()
    carry = sampler.init_carry(plan, x, proc, None)
    out = x
    for i, host in enumerate(plan.rows):
        row = cls.from_row(table[i], host.static_key())
        out, carry, _ = sampler.step_row(out, row, lambda xx, t: den(xx, t + torch.zeros(xx.shape[0], dtype=xx.dtype)),
                                         None, carry)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_init_carry_receives_process_and_condition():
    """The carry starts with the condition endpoint y of an endpoint process (None when b = 0)."""
    from test_solvers import OUBridge

    sampler = dk.create("sampler", "unipc", steps=4)
    x = torch.zeros(3, 2)
    y = torch.ones(3, 2)
    carry = sampler.init_carry(sampler.plan(OUBridge(), x), x, OUBridge(), y)
    assert carry[0] is y and len(carry) == 1 + sampler.history
    vp = dk.create("process", "vp")
    assert sampler.init_carry(sampler.plan(vp, x), x, vp, None)[0] is None
