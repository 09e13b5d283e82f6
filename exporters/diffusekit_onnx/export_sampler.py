"""``mode="sampler"``: the whole fixed-step deterministic sampler as one ONNX graph
``(x_init[, cond]) -> sample``, verified against PyTorch and against the Python sampler."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from diffusekit.api import create, spec_of
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.sampler import StepSampler

from . import metadata, solvers
from .examples import pipeline_example
from .export_denoiser import build_graph
from .options import ExportOptions
from .report import ExportReport
from .sampler_graph import SamplerGraph, UnrolledSampler
from .trace import OnnxExportError, export_module
from .verify import OnnxVerificationError, assert_batch_symbolic, check_graph, compare


def _plain_solver(cfg) -> bool:
    """A diffusekit_solvers config without teleporting or dynamic thresholding."""
    from diffusekit_solvers.base import SolverConfig
    from diffusekit_solvers.thresholding import ThresholdingConfig

    if not isinstance(cfg, SolverConfig) or cfg.teleport:
        return False
    return not (isinstance(cfg, ThresholdingConfig) and cfg.thresholding)


def kernel_of(sampler) -> tuple[str | None, dict[str, Any]]:
    """The Scan kernel matching a pipeline sampler (and the settings it implies), or None.

    ``ode`` (fixed-step euler / heun), ``ddim`` with eta = 0 and ``dpm-solver++`` variant 2M
    (no teleport, no thresholding) have kernels; other deterministic step samplers are
    exported by unrolling their own ``step``. Solver settings are read from the typed config
    class of the registered sampler (checked with ``isinstance``).
    """
    spec = spec_of(sampler, "sampler") or {}
    name = spec.get("name")
    cfg = sampler.config
    if name == "ode":
        from diffusekit_sde.ode import ODEConfig

        if isinstance(cfg, ODEConfig) and cfg.method in ("euler", "heun"):
            return cfg.method, {"denoise_final": bool(cfg.denoise_final)}
    elif name == "ddim":
        from diffusekit_solvers.exponential import DDIMConfig

        if isinstance(cfg, DDIMConfig) and float(cfg.eta) == 0.0 and _plain_solver(cfg):
            return "ddim", {}
    elif name == "dpm-solver++":
        from diffusekit_solvers.exponential import DPMSolverPPConfig

        if isinstance(cfg, DPMSolverPPConfig) and cfg.variant == "2M" and _plain_solver(cfg):
            return "dpm-solver++", {"lower_order_final": bool(cfg.lower_order_final)}
    return None, {}


def sampler_times(pipe, sampler, method: str, opts: ExportOptions) -> torch.Tensor:
    """The grid: the pipeline sampler's own plan / grid when it is the exported one."""
    steps = opts.steps
    if sampler is not None and opts.schedule is None and (steps is None or steps == sampler.steps):
        if isinstance(sampler, StepSampler):
            return sampler.build_plan(pipe.process).t.to(torch.float64)
        from diffusekit_sde.ode import ODEConfig

        if isinstance(sampler.config, ODEConfig):  # the ode sampler's fixed-step grid
            grid = create("schedule", sampler.config.schedule, loc="sampler.schedule")
            return grid.times(pipe.process, sampler.config.steps).to(torch.float64)
    steps = steps or pipe.sampler.steps or 10
    grid = create("schedule", opts.schedule or "uniform", loc="export.schedule")
    return grid.times(pipe.process, steps).to(torch.float64)


def build_sampler_graph(pipe, opts: ExportOptions, example_x: torch.Tensor, cond: Any = None):
    """(module, method, python_sampler_or_None, loop) for the requested export."""
    den = build_graph(pipe, opts)
    sampler = pipe.sampler
    inferred, settings = kernel_of(sampler)
    method = opts.method or inferred
    matches = method is not None and method == inferred
    if sampler.stochastic and matches:
        raise CompatibilityError(f"sampler {type(sampler).__name__} is stochastic; ONNX sampler graphs are "
                                 "deterministic (use ddim eta=0, dpm-solver++, or the ode sampler)")
    if method is None:
        if not isinstance(sampler, StepSampler) or sampler.stochastic:
            raise CompatibilityError(
                f"no ONNX sampler graph for {type(sampler).__name__}: pass method= one of {list(solvers.METHODS)} "
                "or use a deterministic fixed-step sampler (ode with method euler/heun, ddim, dpm-solver++)")
        if opts.loop == "scan":
            raise CompatibilityError(f"{type(sampler).__name__} has no Scan kernel; use loop='unroll' or 'auto', "
                                     f"or method= one of {list(solvers.METHODS)}")
        return UnrolledSampler(den, sampler, example_x, cond).eval(), spec_of(sampler, "sampler")["name"], sampler, "unroll"
    times = sampler_times(pipe, sampler if matches else None, method, opts)
    loop = "unroll" if opts.loop == "unroll" else "scan"
    graph = SamplerGraph(den, method, times, loop=loop,
                         lower_order_final=settings.get("lower_order_final", True),
                         denoise_final=settings.get("denoise_final", False) if matches else False).eval()
    return graph, method, (sampler if matches else None), loop


def export_sampler(pipe, path, opts: ExportOptions, example: Sequence[Any] | None = None) -> ExportReport:
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"ONNX export path must end in .onnx, got {str(path)!r}", loc="path")
    pipe.eval()
    x, _, cond = pipeline_example(pipe, opts.batch, 0, example)
    if not torch.is_tensor(x):
        raise CompatibilityError(
            f"sampler-mode ONNX export takes Tensor states; {type(pipe.process).__name__} has a dict state: "
            "export the denoiser (mode='denoiser', one graph input / output per state leaf) and sample in "
            "Python with Pipeline.load(dir, backend='onnxruntime')")
    x = pipe.process.prior(x.shape[0], tuple(x.shape[1:]), cond=cond, generator=torch.Generator().manual_seed(0))
    module, method, py_sampler, loop = build_sampler_graph(pipe, opts, x, cond)
    inputs = (x,) if cond is None else (x, cond)
    names = ["x_init", "cond"][:len(inputs)]
    start = time.perf_counter()
    scan_error = None
    try:
        export_module(module, inputs, names, ["sample"], path, opts.opset, [],
                      what=f"the {method} sampler ({loop})")
    except OnnxExportError as exc:
        if opts.loop != "auto" or loop != "scan":
            raise
        scan_error = str(exc)
        module.loop = loop = "unroll"  # Scan could not capture this network: unroll the steps
        export_module(module, inputs, names, ["sample"], path, opts.opset, [], what=f"the {method} sampler (unroll)")
    export_s = time.perf_counter() - start
    metadata.write(path, {
        "mode": "sampler", "versions": metadata.versions(), "opset": opts.opset, "pipeline": pipe.config,
        "inputs": names, "outputs": ["sample"], "method": method, "loop": loop, "steps": module.steps,
        "fp16": opts.fp16, "weights_sha256": metadata.weights_hash(pipe),
        "example_shapes": {n: list(v.shape) for n, v in zip(names, inputs)},
    })
    atol, rtol = opts.tolerances()
    start = time.perf_counter()
    model = check_graph(path)
    n_scan = sum(1 for nd in model.graph.node if nd.op_type in ("Scan", "Loop"))
    if loop == "scan" and n_scan == 0:
        raise OnnxVerificationError(f"{path.name}: expected a Scan/Loop node for loop='scan', found none")
    abs_err = rel_err = py_err = float("nan")
    shapes: list = []
    providers: list[str] = []
    if opts.verify:
        from .runtime import OrtModule

        assert_batch_symbolic(model, names + ["sample"])
        ort = OrtModule(path, device="cpu")
        providers = ort.providers
        abs_err = rel_err = 0.0
        for b, seed in ((opts.batch, 0), (opts.batch + 3, 1)):
            xb, _, cb = pipeline_example(pipe, b, seed, example)
            xb = pipe.process.prior(b, tuple(xb.shape[1:]), cond=cb, generator=torch.Generator().manual_seed(seed))
            args = (xb,) if cb is None else (xb, cb)
            got = ort.run(*args)[0]
            with torch.no_grad():
                ref = module(*args)
            a, r = compare([got.numpy()], [ref], atol, rtol, f"{path.name} (graph vs PyTorch) at batch {b}",
                           ["sample"])
            abs_err, rel_err = max(abs_err, a), max(rel_err, r)
            shapes.append(list(xb.shape))
            if py_sampler is not None and opts.verify_python:
                py = pipe.sample(b, cond=cb, x_init=xb, sampler=py_sampler)
                a, _ = compare([got.numpy()], [py], atol, rtol, f"{path.name} (graph vs Python sampler "
                               f"{type(py_sampler).__name__}) at batch {b}", ["sample"])
                py_err = a if py_err != py_err else max(py_err, a)
    verify_s = time.perf_counter() - start
    return ExportReport.from_model(
        path, model, opts, mode="sampler", max_abs_err=abs_err, max_rel_err=rel_err, atol=atol, rtol=rtol,
        providers=providers, export_seconds=export_s, verify_seconds=verify_s, shapes=shapes, inputs=names, outputs=["sample"], loop=loop,
        extra={"method": method, "steps": module.steps, "nfe": module.nfe if isinstance(module, SamplerGraph) else None,
               "python_sampler": None if py_sampler is None else spec_of(py_sampler, "sampler"),
               "python_sampler_max_abs_err": py_err, "scan_nodes": n_scan, "scan_error": scan_error, "graph_nodes": len(model.graph.node)})
