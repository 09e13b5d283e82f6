"""The verification report returned by ``dk.export(pipe, "onnx", path)``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ExportReport:
    """What was written and how closely onnxruntime reproduces PyTorch.

    ``max_abs_err`` / ``max_rel_err`` are the worst errors over every verified input shape
    (rel = |ort - torch| / (|torch| + atol), elementwise). ``shapes`` lists the input shapes
    checked; ``dynamic_dims`` the graph dimensions that stayed symbolic.
    """

    path: str
    mode: str
    max_abs_err: float
    max_rel_err: float
    atol: float
    rtol: float
    opset: int
    ir_version: int
    file_size: int
    providers: list[str]
    export_seconds: float
    verify_seconds: float
    fp16: bool = False
    shapes: list[list[int]] = field(default_factory=list)
    dynamic_dims: dict[str, list[str]] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    loop: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model(cls, path, model, opts, **fields: Any) -> "ExportReport":
        """A report whose opset, IR version, file size, fp16 flag and symbolic dims are read off
        the written ``model`` (an ``onnx.ModelProto``) and the export options."""
        from .verify import symbolic_dims

        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opts.opset)
        return cls(path=str(path), opset=int(opset), ir_version=int(model.ir_version),
                   file_size=path.stat().st_size, fp16=opts.fp16, dynamic_dims=symbolic_dims(model), **fields)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"ONNX {self.mode} export {self.path}: max abs err {self.max_abs_err:.2e}, "
                f"max rel err {self.max_rel_err:.2e} on shapes {self.shapes} (opset {self.opset}, "
                f"IR {self.ir_version}, {self.file_size / 1e6:.2f} MB, providers {self.providers})")
