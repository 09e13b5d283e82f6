"""Verification of an exported graph: full checker, strict shape inference, symbolic dims and
onnxruntime-vs-PyTorch parity with atol + rtol (|ort - ref| <= atol + rtol |ref|)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .trace import OnnxVerificationError


def check_graph(path: Path):
    """``onnx.checker`` (full) and strict shape inference; returns the loaded model."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # noqa: BLE001
        raise OnnxVerificationError(f"{path}: ONNX checker / shape inference failed: {exc}") from exc
    return model


def symbolic_dims(model) -> dict[str, list[str]]:
    """``{tensor name: [dim_param or size, ...]}`` for every graph input and output."""
    out = {}
    for v in list(model.graph.input) + list(model.graph.output):
        dims = []
        for d in v.type.tensor_type.shape.dim:
            dims.append(d.dim_param if d.dim_param else str(d.dim_value))
        out[v.name] = dims
    return out


def assert_batch_symbolic(model, names: Sequence[str]) -> None:
    dims = symbolic_dims(model)
    for n in names:
        if n in dims and dims[n] and dims[n][0].isdigit():
            raise OnnxVerificationError(
                f"graph {'input' if n in {i.name for i in model.graph.input} else 'output'} {n!r} has a fixed "
                f"batch dimension {dims[n][0]} after export; the batch must stay symbolic (dims: {dims[n]})")


def to_numpy(v: Any) -> np.ndarray:
    return v.detach().cpu().contiguous().numpy()


def compare(got: Sequence[np.ndarray], ref: Sequence[torch.Tensor], atol: float, rtol: float,
            what: str, names: Sequence[str]) -> tuple[float, float]:
    """Max abs / rel errors; raises if any element violates |got - ref| <= atol + rtol |ref|."""
    worst_abs = worst_rel = 0.0
    for name, g, r in zip(names, got, ref):
        r = to_numpy(r).astype(np.float64)
        g = np.asarray(g).astype(np.float64)
        if g.shape != r.shape:
            raise OnnxVerificationError(f"{what}: output {name!r} has shape {g.shape} in onnxruntime but "
                                        f"{r.shape} in PyTorch")
        if not np.isfinite(g).all():
            raise OnnxVerificationError(f"{what}: output {name!r} has NaN/Inf in onnxruntime")
        err = np.abs(g - r)
        a = float(err.max()) if err.size else 0.0
        rel = float((err / (np.abs(r) + atol)).max()) if err.size else 0.0
        worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, rel)
        bad = err > atol + rtol * np.abs(r)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(err - (atol + rtol * np.abs(r)))), err.shape)
            raise OnnxVerificationError(
                f"{what}: output {name!r} differs from PyTorch beyond atol={atol:g}, rtol={rtol:g} at "
                f"{int(bad.sum())} of {bad.size} elements (max abs err {a:.3e}; worst at {tuple(int(i) for i in idx)}: "
                f"ort {g[idx]:.6g} vs torch {r[idx]:.6g}); raise atol/rtol only if this is expected (fp16)")
    return worst_abs, worst_rel
