"""Whole-sampler ONNX graphs: closed-form checks of the step kernels (eager, fast), parity with
the registered Python samplers, and exported Scan graphs verified in onnxruntime."""

from __future__ import annotations

import math

import onnx
import pytest
import torch

import diffusekit as dk
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.testing.oracles import GaussianMixture, oracle_pipeline

from diffusekit_onnx import solvers
from diffusekit_onnx.export_sampler import build_sampler_graph
from diffusekit_onnx.graphs import DenoiserGraph
from diffusekit_onnx.options import ExportOptions
from diffusekit_onnx.runtime import OrtModule
from diffusekit_onnx.sampler_graph import SamplerGraph


def _graph(pipe, method, times, loop="scan"):
    den = DenoiserGraph(pipe.network, pipe.parameterization, pipe.process).eval()
    return SamplerGraph(den, method, times, loop=loop).eval()


@pytest.mark.parametrize("method", ["ddim", "dpm-solver++"])
@pytest.mark.parametrize("loop", ["scan", "unroll"])
def test_exponential_kernels_are_exact_for_a_point_mass(method, loop):
    """With x0_hat = mu (point-mass data) the PF-ODE keeps (x - a mu) / c constant, and
    DDIM / DPM-Solver++ integrate it exactly: x_N = a_N mu + c_N (x_0 - a_0 mu) / c_0."""
    torch.manual_seed(0)
    mu = torch.tensor([[0.7, -1.2]])
    mix = GaussianMixture(mu, torch.tensor([1e-4]))
    vp = dk.create("process", "vp")
    pipe = oracle_pipeline(vp, mix)
    times = torch.linspace(1.0, 0.02, 6, dtype=torch.float64)
    x = torch.randn(5, 2)
    with torch.no_grad():
        out = _graph(pipe, method, times, loop)(x)
    a, _, c = (v.to(torch.float64) for v in vp.coefficients(times))
    exact = a[-1] * mu + c[-1] * (x.double() - a[0] * mu) / c[0]
    assert torch.allclose(out.double(), exact, atol=2e-5)


def _gaussian_error(method, steps):
    """Error of the final state against the closed-form PF-ODE flow of Gaussian data."""
    mu, s = torch.tensor([[0.5, -0.25]]), 0.6
    vp = dk.create("process", "vp")
    pipe = oracle_pipeline(vp, GaussianMixture(mu, torch.tensor([s])))
    times = torch.linspace(1.0, 0.05, steps + 1, dtype=torch.float64)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = _graph(pipe, method, times, "unroll")(x).double()
    a, _, c = (v.to(torch.float64) for v in vp.coefficients(times))
    sd = lambda i: torch.sqrt(a[i] ** 2 * s * s + c[i] ** 2)  # noqa: E731 - marginal std at t_i
    exact = a[-1] * mu + sd(-1) * (x.double() - a[0] * mu) / sd(0)
    return float((out - exact).abs().max())


@pytest.mark.parametrize("method,order", [("ddim", 1), ("euler", 1), ("heun", 2), ("dpm-solver++", 2)])
def test_convergence_order_on_gaussian_data(method, order):
    """Doubling the steps divides the error by ~2^order (exact Gaussian PF-ODE flow as truth)."""
    e1, e2 = _gaussian_error(method, 32), _gaussian_error(method, 64)
    rate = math.log2(e1 / e2)
    assert order - 0.35 < rate < order + 0.6, (e1, e2, rate)


@pytest.mark.parametrize("spec", [
    {"name": "ode", "method": "euler", "steps": 12},
    {"name": "ode", "method": "heun", "steps": 6},
    {"name": "ddim", "steps": 8},
    {"name": "dpm-solver++", "variant": "2M", "steps": 8},
    {"name": "dpm-solver++", "variant": "2M", "steps": 16},
])
def test_kernels_match_registered_python_samplers(spec):
    """Same grid, same maths: the graph module (scan) equals Pipeline.sample with that sampler."""
    if ("sampler", spec["name"]) not in dk.registry():
        pytest.skip(f"sampler {spec['name']} not registered")
    mix = GaussianMixture.ring(4, 1.5, 0.2)
    pipe = oracle_pipeline(dk.create("process", "vp"), mix, sampler=dk.create("sampler", spec))
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    module, method, py, loop = build_sampler_graph(pipe, ExportOptions(mode="sampler"), x)
    assert py is pipe.sampler and loop == "scan"
    with torch.no_grad():
        got = module(x)
    ref = pipe.sample(6, x_init=x)
    assert (got - ref).abs().max() <= 1e-5
    assert module.nfe == pipe.last_nfe


def test_stochastic_and_kernel_less_samplers_are_refused():
    pipe = dk.Pipeline.from_config({"process": {"name": "vp"}, "parameterization": "eps",
                                    "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                                    "sampler": {"name": "euler-maruyama", "steps": 4}})
    with pytest.raises(CompatibilityError, match="stochastic|deterministic"):
        dk.export(pipe, "onnx", "unused.onnx", mode="sampler")
    with pytest.raises(CompatibilityError, match="no ONNX kernel"):
        solvers.tables("rk4", pipe.process, torch.linspace(1, 0.1, 3, dtype=torch.float64))


@pytest.fixture(scope="module")
def cfg_pipe():
    pytest.importorskip("diffusekit_guidance")
    if ("guidance", "cfg") not in dk.registry():
        pytest.skip("cfg guidance not registered")
    torch.manual_seed(0)
    return dk.Pipeline.from_config({
        "process": {"name": "vp"}, "parameterization": "eps",
        "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1, "num_classes": 3},
        "conditioner": {"name": "label", "num_classes": 3}, "guidance": {"name": "cfg", "scale": 2.0},
        "sampler": {"name": "ode", "method": "heun", "steps": 6}})


@pytest.mark.slow
def test_heun_with_cfg_exports_to_one_scan_node(cfg_pipe, tmp_path):
    """The acceptance check: a Scan graph with CFG and a dynamic batch, <= 1e-3 from both the
    PyTorch module and the registered Python sampler, on two batch sizes."""
    path = tmp_path / "sampler.onnx"
    report = dk.export(cfg_pipe, "onnx", path, mode="sampler")
    assert report.loop == "scan" and report.extra["scan_nodes"] == 1
    assert report.max_abs_err <= 1e-3 and report.extra["python_sampler_max_abs_err"] <= 1e-3
    assert report.extra["python_sampler"]["name"] == "ode" and report.extra["nfe"] == 11
    assert report.inputs == ["x_init", "cond"] and report.dynamic_dims["x_init"][0] == "batch"
    assert [s[0] for s in report.shapes] == [2, 5]
    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node].count("Scan") == 1
    # a batch size never seen during export or verification
    x = cfg_pipe.process.prior(9, (2,), generator=torch.Generator().manual_seed(5))
    c = torch.arange(9) % 3
    got = OrtModule(path).run(x, c)[0]
    ref = cfg_pipe.sample(9, cond=c, x_init=x)
    assert (got - ref).abs().max() <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("spec", [{"name": "ddim", "steps": 10}, {"name": "dpm-solver++", "variant": "2M", "steps": 10},
                                  {"name": "ode", "method": "euler", "steps": 10}])
def test_scan_graphs_of_every_kernel(spec, tmp_path):
    if ("sampler", spec["name"]) not in dk.registry():
        pytest.skip(f"sampler {spec['name']} not registered")
    pipe = oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2),
                           sampler=dk.create("sampler", spec))
    report = dk.export(pipe, "onnx", tmp_path / "s.onnx", mode="sampler")
    assert report.loop == "scan" and report.max_abs_err <= 1e-3
    assert report.extra["python_sampler_max_abs_err"] <= 1e-3


def _deterministic_samplers():
    out = []
    for spec in dk.registry().specs("sampler"):
        try:
            s = dk.create("sampler", spec.name)
            oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2), sampler=s)
        except (CompatibilityError, ConfigError):  # samplers for other processes
            continue
        if getattr(s, "stochastic", False) or spec.name == "ode":  # ode: adaptive rk45 by default
            continue
        out.append(spec.name)
    return out


@pytest.mark.parametrize("name", _deterministic_samplers())
def test_every_deterministic_registered_sampler_has_a_graph_module(name):
    """Kernel (Scan) or unrolled, the traced module equals Pipeline.sample for every registered
    deterministic sampler that fits VP (eager check; the ONNX export of one is tested below)."""
    pipe = oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2),
                           sampler=dk.create("sampler", name))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    module, method, py, loop = build_sampler_graph(pipe, ExportOptions(mode="sampler"), x)
    with torch.no_grad():
        got = module(x)
    assert (got - pipe.sample(4, x_init=x)).abs().max() <= 1e-5


def test_kernel_less_sampler_exports_unrolled_and_matches_python(tmp_path):
    """dpm-solver++ 3M has no Scan kernel: its own sample() is unrolled, verified <= 1e-3."""
    if ("sampler", "dpm-solver++") not in dk.registry():
        pytest.skip("dpm-solver++ not registered")
    torch.manual_seed(0)
    pipe = dk.Pipeline.from_config({"process": {"name": "vp"}, "parameterization": "eps",
                                    "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                                    "sampler": {"name": "dpm-solver++", "variant": "3M", "steps": 4}})
    report = dk.export(pipe, "onnx", tmp_path / "s.onnx", mode="sampler")
    assert report.loop == "unroll" and report.extra["scan_nodes"] == 0
    assert report.extra["python_sampler"]["variant"] == "3M"
    assert report.max_rel_err <= 1e-3
    x = pipe.process.prior(6, (2,), generator=torch.Generator().manual_seed(4))
    got = OrtModule(tmp_path / "s.onnx").run(x)[0]
    ref = pipe.sample(6, x_init=x)  # |ref| ~ 1e2 for an untrained eps network: compare relatively
    assert torch.allclose(got, ref, rtol=1e-3, atol=1e-3)
