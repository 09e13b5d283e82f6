"""Whole-sampler ONNX graphs: the graph runs the sampler's own step (closed-form checks and
parity with the Python loop, eager and fast) and exported Scan graphs verified in onnxruntime."""

from __future__ import annotations

import onnx
import pytest
import torch

import diffusekit as dk
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.testing.oracles import GaussianMixture, oracle_pipeline

from diffusekit_onnx.export_sampler import build_sampler_graph
from diffusekit_onnx.graphs import DenoiserGraph
from diffusekit_onnx.options import ExportOptions
from diffusekit_onnx.runtime import OrtModule
from diffusekit_onnx.sampler_graph import SamplerGraph


def _graph(pipe, sampler, x, loop="scan"):
    den = DenoiserGraph(pipe.network, pipe.parameterization, pipe.process).eval()
    return SamplerGraph(den, sampler, x, loop=loop).eval()


@pytest.mark.parametrize("name", ["ddim", "dpm-solver++"])
@pytest.mark.parametrize("loop", ["scan", "unroll"])
def test_exponential_solvers_are_exact_for_a_point_mass_in_the_graph(name, loop):
    """With x0_hat = mu (point-mass data) the PF-ODE keeps (x - a mu) / c constant, and
    DDIM / DPM-Solver++ integrate it exactly: x_N = a_N mu + c_N (x_0 - a_0 mu) / c_0."""
    torch.manual_seed(0)
    mu = torch.tensor([[0.7, -1.2]])
    mix = GaussianMixture(mu, torch.tensor([1e-4]))
    vp = dk.create("process", "vp")
    sampler = dk.create("sampler", name, steps=5, schedule="uniform")
    pipe = oracle_pipeline(vp, mix, sampler=sampler)
    x = torch.randn(5, 2)
    with torch.no_grad():
        out = _graph(pipe, sampler, x, loop)(x)
    times = sampler.build_plan(vp).t
    a, _, c = (v.to(torch.float64) for v in vp.coefficients(times))
    exact = a[-1] * mu + c[-1] * (x.double() - a[0] * mu) / c[0]
    assert torch.allclose(out.double(), exact, atol=2e-5)


# every deterministic Gaussian solver configuration: (registry name, params)
DETERMINISTIC = [("ddim", {}), ("dpm-solver++", {"variant": "2M"}), ("dpm-solver++", {"variant": "3M"}),
                 ("dpm-solver++", {"variant": "2S"}), ("dpm-solver++", {"variant": "2M", "thresholding": True}),
                 ("dpm-solver", {"order": 2}), ("dpm-solver", {"order": 3}), ("deis", {}), ("deis", {"order": 2}),
                 ("unipc", {"variant": "bh1"}), ("unipc", {"variant": "bh2"}), ("heun", {}), ("euler", {})]


FAST = {("ddim", "{}"), ("dpm-solver++", str({"variant": "3M"})), ("deis", "{}"), ("unipc", str({"variant": "bh2"})),
        ("heun", "{}")}
CASES = [pytest.param(proc, n, p, id=f"{proc}-{n}-{p}",
                      marks=() if proc == "vp" and (n, str(p)) in FAST else pytest.mark.slow)
         for proc in ("vp", "edm") for n, p in DETERMINISTIC]


@pytest.mark.parametrize("process,name,params", CASES)
def test_graph_module_runs_the_samplers_own_step_and_equals_python(process, name, params):
    """The Scan body is the sampler's own step_row: the graph module (scan over its rows) equals
    Pipeline.sample with the same sampler (float32, relative error <= 1e-5), same NFE."""
    mix = GaussianMixture.ring(4, 1.5, 0.2)
    sampler = dk.create("sampler", name, steps=7, **params)
    pipe = oracle_pipeline(dk.create("process", process), mix, sampler=sampler)
    x = pipe.process.prior(6, (2,), generator=torch.Generator().manual_seed(1))
    module, method, py, loop = build_sampler_graph(pipe, ExportOptions(mode="sampler"), x)
    assert py is pipe.sampler and method == name and loop == "scan" and module.scan_runs
    with torch.no_grad():
        got = module(x)
    ref = pipe.sample(6, x_init=x)
    assert float((got - ref).abs().max() / ref.abs().max()) <= 1e-5
    assert module.nfe == pipe.last_nfe


def test_one_scan_per_structure_heun_scans_n_minus_1_steps():
    pipe = oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2),
                           sampler=dk.create("sampler", "heun", steps=6))
    x = torch.randn(3, 2)
    module, *_ = build_sampler_graph(pipe, ExportOptions(mode="sampler"), x)
    assert module.scan_runs == [(0, 5)]  # the last (Euler) step is one unrolled step after the Scan
    for spec in ({"name": "dpm-solver++", "variant": "3M"}, {"name": "unipc"}, {"name": "deis"}, {"name": "ddim"}):
        pipe.sampler = dk.create("sampler", {**spec, "steps": 6})
        module, *_ = build_sampler_graph(pipe, ExportOptions(mode="sampler"), x)
        assert module.scan_runs == [(0, 6)], spec


def test_method_steps_and_schedule_select_a_registered_sampler():
    pipe = oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2),
                           sampler=dk.create("sampler", "deis", steps=5))
    x = torch.randn(3, 2)
    module, method, py, _ = build_sampler_graph(
        pipe, ExportOptions(mode="sampler", method="dpm-solver++", steps=8, schedule="logsnr"), x)
    assert method == "dpm-solver++" and py.steps == 8 and py.config.schedule == "logsnr" and module.steps == 8
    with torch.no_grad():
        got = module(x)
    torch.testing.assert_close(got, pipe.sample(3, x_init=x, sampler=py), rtol=1e-5, atol=1e-5)


def test_stochastic_and_non_step_samplers_are_refused():
    pipe = dk.Pipeline.from_config({"process": {"name": "vp"}, "parameterization": "eps",
                                    "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1},
                                    "sampler": {"name": "euler-maruyama", "steps": 4}})
    with pytest.raises(CompatibilityError, match="stochastic|deterministic"):
        dk.export(pipe, "onnx", "unused.onnx", mode="sampler")
    pipe.sampler = dk.create("sampler", "ode", method="heun", steps=4)
    with pytest.raises(CompatibilityError, match="StepSampler"):
        build_sampler_graph(pipe, ExportOptions(mode="sampler"), torch.randn(2, 2))
    with pytest.raises(ConfigError):
        build_sampler_graph(pipe, ExportOptions(mode="sampler", method="no-such-solver"), torch.randn(2, 2))


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
        "sampler": {"name": "heun", "steps": 6}})


@pytest.mark.slow
def test_heun_with_cfg_exports_to_one_scan_node(cfg_pipe, tmp_path):
    """The acceptance check: a Scan graph with CFG and a dynamic batch, <= 1e-3 from both the
    PyTorch module and the registered Python sampler, on two batch sizes."""
    path = tmp_path / "sampler.onnx"
    report = dk.export(cfg_pipe, "onnx", path, mode="sampler")
    assert report.loop == "scan" and report.extra["scan_nodes"] == 1
    assert report.max_abs_err <= 1e-3 and report.extra["python_sampler_max_abs_err"] <= 1e-3
    assert report.extra["python_sampler"]["name"] == "heun" and report.extra["nfe"] == 11
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


SCAN_EXPORTS = [{"name": "ddim"}, {"name": "dpm-solver++", "variant": "2M"}, {"name": "dpm-solver++", "variant": "3M"},
                {"name": "deis"}, {"name": "unipc"}, {"name": "heun"}, {"name": "euler"}]


def _export_and_check(spec, tmp_path, stats: bool = False):
    ring = GaussianMixture.ring(4, 1.5, 0.2)
    pipe = oracle_pipeline(dk.create("process", "vp"), ring, sampler=dk.create("sampler", {**spec, "steps": 6}))
    if stats:  # what dk.train records: the default teleport="auto" then starts after t_max
        from diffusekit_solvers import fit_gaussian_stats

        fit_gaussian_stats(pipe, ring.sample(4000, torch.Generator().manual_seed(0)))
        resolved = pipe.sampler.with_buffers(pipe.buffers)
        assert resolved.build_plan(pipe.process).t[0] < pipe.process.t_max
    report = dk.export(pipe, "onnx", tmp_path / "s.onnx", mode="sampler")
    assert report.loop == "scan" and report.extra["scan_nodes"] == 1, report.extra
    x = pipe.process.prior(7, (2,), generator=torch.Generator().manual_seed(4))
    got = OrtModule(tmp_path / "s.onnx").run(x)[0]
    ref = pipe.sample(7, x_init=x)
    assert float((got - ref).abs().max() / ref.abs().max()) <= 1e-5, spec
    assert report.extra["python_sampler_max_abs_err"] <= 1e-5


@pytest.mark.slow
def test_default_solver_exports_to_one_scan_node(tmp_path):
    """The default (deis): one Scan node, onnxruntime within 1e-5 (relative) of the Python loop."""
    _export_and_check({"name": "deis"}, tmp_path)


@pytest.mark.slow
def test_default_solver_with_data_statistics_exports_the_teleport(tmp_path):
    """teleport="auto" with recorded statistics: the graph teleports the prior sample like the
    Python loop (one Scan node, within 1e-5)."""
    _export_and_check({"name": "deis"}, tmp_path, stats=True)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SCAN_EXPORTS, ids=[str(s) for s in SCAN_EXPORTS])
def test_every_deterministic_solver_exports_to_one_scan_node(spec, tmp_path):
    _export_and_check(spec, tmp_path)


def _deterministic_step_samplers():
    from diffusekit.sampler import StepSampler

    out = []
    for spec in dk.registry().specs("sampler"):
        try:
            s = dk.create("sampler", spec.name)
            oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2), sampler=s)
        except (CompatibilityError, ConfigError):  # samplers for other processes
            continue
        if isinstance(s, StepSampler) and not s.stochastic:
            out.append(spec.name)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", _deterministic_step_samplers())
def test_every_deterministic_registered_step_sampler_has_a_graph_module(name):
    """Scan or unrolled, the traced module equals Pipeline.sample for every registered
    deterministic step sampler that fits VP (eager check)."""
    pipe = oracle_pipeline(dk.create("process", "vp"), GaussianMixture.ring(4, 1.5, 0.2),
                           sampler=dk.create("sampler", name))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    module, method, py, loop = build_sampler_graph(pipe, ExportOptions(mode="sampler"), x)
    with torch.no_grad():
        got = module(x)
    assert (got - pipe.sample(4, x_init=x)).abs().max() <= 1e-5
