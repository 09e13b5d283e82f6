"""``mode="sampler"``: the whole fixed-step deterministic sampler as one ONNX graph
``(x_init[, cond]) -> sample``, verified against PyTorch and against the Python sampler.

The exported sampler is the pipeline's own, or the registered sampler named by ``method=``
(with ``steps=`` / ``schedule=`` overrides); its step maths come from the sampler itself
(:class:`~diffusekit.sampler.TabulatedSampler` rows in a ``Scan``, see :mod:`.sampler_graph`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from diffusekit.api import create, spec_of
from diffusekit.errors import CompatibilityError, ConfigError

from . import metadata
from .examples import pipeline_example
from .export_denoiser import build_graph
from .options import ExportOptions
from .report import ExportReport
from .sampler_graph import SamplerGraph
from .trace import OnnxExportError, export_module
from .verify import OnnxVerificationError, assert_batch_symbolic, check_graph, compare


def exported_sampler(pipe, opts: ExportOptions):
    """The sampler to export: the pipeline's, or ``method`` / ``steps`` / ``schedule`` applied to
    its registered spec (validated by the registry like any sampler config)."""
    sampler = pipe.sampler
    if opts.method is None and opts.steps is None and opts.schedule is None:
        return sampler
    spec = dict(spec_of(sampler, "sampler") or {}) if opts.method is None else {"name": opts.method}
    if not spec:
        raise CompatibilityError(f"the pipeline's sampler {type(sampler).__name__} is not registered; pass "
                                 "method= (a registered sampler name) to choose the exported sampler")
    if opts.steps is not None:
        spec["steps"] = opts.steps
    elif opts.method is not None and sampler.steps is not None:
        spec["steps"] = sampler.steps
    if opts.schedule is not None:
        spec["schedule"] = opts.schedule
    return create("sampler", spec, loc="export.method")


def build_sampler_graph(pipe, opts: ExportOptions, example_x: torch.Tensor, cond: Any = None):
    """(module, sampler name, python sampler, loop) for the requested export."""
    den = build_graph(pipe, opts)
    sampler = exported_sampler(pipe, opts).with_buffers(pipe.buffers)
    if sampler.stochastic:
        raise CompatibilityError(f"sampler {type(sampler).__name__} is stochastic; ONNX sampler graphs are "
                                 "deterministic (use e.g. ddim eta=0, dpm-solver++ 2M / 3M, deis, unipc, heun)")
    loop = "unroll" if opts.loop == "unroll" else "scan"
    module = SamplerGraph(den, sampler, example_x, loop=loop, buffers=pipe.buffers).eval()
    if loop == "scan" and not module.scan_runs:
        if opts.loop == "scan":
            raise CompatibilityError(f"{type(sampler).__name__} has no Scan form (not a TabulatedSampler, or one "
                                     "step per structure); use loop='unroll' or 'auto'")
        module.loop = loop = "unroll"
    name = (spec_of(sampler, "sampler") or {}).get("name", type(sampler).__name__)
    return module, name, sampler, loop


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
        "sampler": spec_of(py_sampler, "sampler"),
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
            if opts.verify_python:
                py = pipe.sample(b, cond=cb, x_init=xb, sampler=py_sampler)
                a, _ = compare([got.numpy()], [py], atol, rtol, f"{path.name} (graph vs Python sampler "
                               f"{type(py_sampler).__name__}) at batch {b}", ["sample"])
                py_err = a if py_err != py_err else max(py_err, a)
    verify_s = time.perf_counter() - start
    return ExportReport.from_model(
        path, model, opts, mode="sampler", max_abs_err=abs_err, max_rel_err=rel_err, atol=atol, rtol=rtol,
        providers=providers, export_seconds=export_s, verify_seconds=verify_s, shapes=shapes, inputs=names, outputs=["sample"], loop=loop,
        extra={"method": method, "steps": module.steps, "nfe": module.nfe,
               "python_sampler": spec_of(py_sampler, "sampler"),
               "python_sampler_max_abs_err": py_err, "scan_nodes": n_scan, "scan_error": scan_error,
               "graph_nodes": len(model.graph.node)})
