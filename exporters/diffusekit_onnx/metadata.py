"""Metadata stored in every exported model (``metadata_props``) and read back at load time."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

PREFIX = "diffusekit."


def weights_hash(pipe) -> str:
    """sha256 over the pipeline's module states (names, dtypes, shapes and bytes)."""
    from diffusekit.io import state_tensors

    h = hashlib.sha256()
    for name, t in sorted(state_tensors(pipe).items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def versions() -> dict[str, str]:
    import onnx

    from diffusekit.io import versions as dk_versions

    out = dict(dk_versions())
    out["onnx"] = onnx.__version__
    try:
        import onnxscript

        out["onnxscript"] = onnxscript.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def write(path, fields: dict[str, Any]) -> None:
    """Add ``diffusekit.<key>`` metadata (JSON-encoded values) to the model file in place."""
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in fields.items():
        model.metadata_props.add(key=PREFIX + k, value=json.dumps(v, sort_keys=True, default=str))
    model.producer_name = "diffusekit"
    onnx.save(model, str(path))


def read(path_or_model) -> dict[str, Any]:
    import onnx

    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else \
        onnx.load(str(path_or_model), load_external_data=False)
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(PREFIX):
            try:
                out[p.key[len(PREFIX):]] = json.loads(p.value)
            except json.JSONDecodeError:
                out[p.key[len(PREFIX):]] = p.value
    return out
