"""``mode="denoiser"``: one (guided) denoiser evaluation as an ONNX graph, verified."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from diffusekit import state as st
from diffusekit.errors import ConfigError

from . import metadata
from .examples import bare_network_example, pipeline_example
from .graphs import DenoiserGraph, fold_guidance
from .options import ExportOptions
from .report import ExportReport
from .trace import Axes, Signature, export_module, probe_dynamic_axes, resize_axes
from .verify import assert_batch_symbolic, check_graph, compare

#: names of the denoiser graph's arguments; a dict state or condition gets one input per leaf
#: (``x_t.a``, ``x_t.b``, ``cond.label``)
ARGUMENTS = ("x_t", "t", "cond")


def verification_inputs(inputs: Sequence[Any], sig: Signature, axes: Axes, batch: int, seed: int,
                        make) -> list[tuple[Any, ...]]:
    """The export example plus a second set with another batch (and doubled dynamic axes)."""
    second = tuple(Signature.canonical(v) for v in make(batch + 3, seed + 1))
    second = sig.unflatten(resize_axes(sig.flatten(second), axes))
    return [tuple(inputs), second]


def input_names(inputs: Sequence[Any]) -> list[str]:
    """Flat graph input names: ``x_t``, ``t``, ``cond`` for Tensors, dotted names per leaf of a dict."""
    return Signature(inputs, ARGUMENTS).names


def shape_summary(x: Any) -> Any:
    """``[B, ...]`` of a Tensor state, ``{leaf: [B, ...]}`` of a dict state (for reports)."""
    if torch.is_tensor(x):
        return list(x.shape)
    return {name: list(v.shape) for name, v in st.leaves(x)}


def build_graph(pipe, opts: ExportOptions) -> DenoiserGraph:
    guidance = fold_guidance(pipe, opts.fold_guidance)
    net = pipe.network
    cond_mod = pipe.conditioner
    if opts.fp16:
        net = copy.deepcopy(net).half()
        cond_mod = copy.deepcopy(cond_mod).half() if isinstance(cond_mod, torch.nn.Module) else cond_mod
    return DenoiserGraph(net, pipe.parameterization, pipe.process, cond_mod, guidance, fp16=opts.fp16).eval()


def run_verification(path: Path, module: torch.nn.Module, sets: list[tuple[Any, ...]], sig: Signature,
                     out_names: list[str], atol: float, rtol: float, reference: torch.nn.Module | None = None):
    """ORT CPU vs PyTorch on every input set; returns (abs, rel, shapes, providers)."""
    from .runtime import OrtModule

    ort = OrtModule(path, device="cpu")
    worst_abs = worst_rel = 0.0
    shapes = []
    ref_mod = reference if reference is not None else module
    for args in sets:
        with torch.no_grad():
            ref = ref_mod(*args)
        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        got = ort.run_named(dict(zip(sig.names, sig.flatten(args))))
        shape = shape_summary(args[0])
        a, r = compare([got[n].numpy() for n in out_names], ref, atol, rtol,
                       f"{path.name} at input shape {shape}", out_names)
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
        shapes.append(shape)
    return worst_abs, worst_rel, shapes, ort.providers


def export_denoiser(pipe, path, opts: ExportOptions, example: Sequence[Any] | None = None) -> ExportReport:
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"ONNX export path must end in .onnx, got {str(path)!r}", loc="path")
    pipe.eval()
    graph = build_graph(pipe, opts)
    inputs = pipeline_example(pipe, opts.batch, 0, example)
    if graph.guidance is not None and inputs[2] is None:
        raise ConfigError("the pipeline has classifier-free guidance but the export example has no condition; "
                          "pass example=(x_t, t, cond) or give the network example_inputs with a condition",
                          loc="example")
    inputs = tuple(v for v in inputs if v is not None) if inputs[2] is None else inputs
    meta = {"pipeline": pipe.config, "conditioner_in_graph": pipe.conditioner is not None,
            "guidance_folded": None if graph.guidance is None else {
                "scale": graph.guidance.scale, "guidance": pipe.config.get("guidance")},
            "weights_sha256": metadata.weights_hash(pipe)}
    reference = None
    if opts.fp16:  # fp16 graphs are compared with the float32 denoiser
        reference = DenoiserGraph(pipe.network, pipe.parameterization, pipe.process, pipe.conditioner,
                                  graph.guidance).eval()
    return export_graph(graph, inputs, path, opts, meta, lambda b, s: pipeline_example(pipe, b, s, example),
                        what=f"the denoiser of {type(pipe.network).__name__}", reference=reference)


def export_network(network, path, example: Sequence[Any] | None = None, **options) -> ExportReport:
    """Export and verify a bare network ``network(x_t, t, cond)`` (no pipeline).

    Inputs come from ``example``, the network's declared ``example_inputs(batch)`` or its
    declared ``sample_shape`` (:class:`diffusekit.network.Network`); used to check that every
    registered network exports.
    """
    from diffusekit.config import validate_params

    opts = validate_params(ExportOptions, options, loc="export")
    path = Path(path)
    if example is None:
        if bare_network_example(network, 1, 0) is None:
            raise ConfigError(f"{type(network).__name__} declares neither example_inputs(batch) nor sample_shape "
                              "(diffusekit.network.Network); pass example=(x_t, t, cond)", loc="example")
        make = lambda b, s: bare_network_example(network, b, s)  # noqa: E731
    else:
        make = lambda b, s: tuple(example)  # noqa: E731
    inputs = tuple(make(opts.batch, 0))
    inputs = inputs if len(inputs) > 2 and inputs[2] is not None else inputs[:2]
    net = copy.deepcopy(network).half() if opts.fp16 else network
    graph = DenoiserGraph(net, None, None, None, None, fp16=opts.fp16).eval()
    return export_graph(graph, inputs, path, opts, {"network": type(network).__name__},
                        make, what=type(network).__name__,
                        reference=DenoiserGraph(network, None, None).eval() if opts.fp16 else None)


def export_graph(graph: DenoiserGraph, inputs, path: Path, opts: ExportOptions, meta: dict, make,
                 what: str, reference=None) -> ExportReport:
    """Export ``graph`` on ``inputs``, write metadata, verify on a second shape (``make(batch, seed)``).

    Every tensor leaf of a structured input (a dict state or condition) is one named graph
    input, every leaf of the outputs one named output; the batch stays symbolic on all of them.
    """
    inputs = tuple(Signature.canonical(v) for v in inputs)
    sig = Signature(inputs, ARGUMENTS)
    names = sig.names
    out_names = graph.describe(*inputs)
    axes = probe_dynamic_axes(graph, inputs, sig) if opts.dynamic == "auto" else []
    start = time.perf_counter()
    export_module(graph, inputs, names, out_names, path, opts.opset, axes, what=what)
    export_s = time.perf_counter() - start
    metadata.write(path, {
        "mode": "denoiser", "versions": metadata.versions(), "opset": opts.opset,
        "inputs": names, "outputs": out_names, "output_kind": graph.kind, "fp16": opts.fp16,
        "raw_outputs": graph.raw_names, "raw_output_shape": st.shape_to_json(graph.raw_shape),
        "example_shapes": {n: list(v.shape) for n, v in zip(names, sig.flatten(inputs)) if torch.is_tensor(v)},
        **meta})
    atol, rtol = opts.tolerances()
    start = time.perf_counter()
    model = check_graph(path)
    abs_err = rel_err = float("nan")
    shapes: list = []
    providers: list[str] = []
    if opts.verify:
        assert_batch_symbolic(model, names + out_names)
        n_args = len(inputs)
        sets = verification_inputs(inputs, sig, axes, opts.batch, 0, lambda b, s: tuple(make(b, s))[:n_args])
        abs_err, rel_err, shapes, providers = run_verification(path, graph, sets, sig, out_names,
                                                               atol, rtol, reference)
    verify_s = time.perf_counter() - start
    dynamic_axes: dict[int, list[int]] = {}
    for k, group in axes:
        dynamic_axes.setdefault(int(k), [])
        dynamic_axes[int(k)].extend(i for i in group if i not in dynamic_axes[int(k)])
    return ExportReport.from_model(
        path, model, opts, mode="denoiser", max_abs_err=abs_err, max_rel_err=rel_err, atol=atol, rtol=rtol,
        providers=providers, export_seconds=export_s, verify_seconds=verify_s, shapes=shapes, inputs=names,
        outputs=out_names,
        extra={"guidance_scale": None if graph.guidance is None else graph.guidance.scale,
               "dynamic_axes": dynamic_axes})
