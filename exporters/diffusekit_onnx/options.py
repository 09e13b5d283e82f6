"""Validated options of the ONNX exporter (``dk.export(pipe, "onnx", path, **options)``)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from diffusekit.config import ComponentConfig


class ExportOptions(ComponentConfig):
    """Options of ``dk.export(pipe, "onnx", path, ...)``; unknown keys are errors."""

    mode: Literal["denoiser", "sampler"] = Field(
        "denoiser", description="denoiser: one network evaluation (+ CFG); sampler: the whole fixed-step loop")
    fp16: bool = Field(False, description="run the graph's arithmetic in float16 (inputs / outputs stay float32)")
    opset: int = Field(20, ge=18, le=23, description="ONNX opset of the dynamo exporter")
    atol: Optional[float] = Field(None, gt=0, description="absolute tolerance (default 1e-4 fp32 / 1e-2 fp16; "
                                  "sampler mode 1e-3)")
    rtol: Optional[float] = Field(None, ge=0, description="relative tolerance (default 1e-4 fp32 / 1e-2 fp16; "
                                  "sampler mode 1e-3)")
    batch: int = Field(2, ge=1, description="batch of the export example (verification also uses batch + 3)")
    verify: bool = Field(True, description="run checker, shape inference and onnxruntime parity")
    dynamic: Literal["auto", "batch"] = Field(
        "auto", description="auto: batch plus every other input dim the network accepts at another size; "
                            "batch: only the batch dim")
    fold_guidance: bool = Field(True, description="fold classifier-free guidance into the graph as a batched call")
    # sampler mode
    method: Optional[str] = Field(
        None, description="sampler mode: a registered deterministic sampler name, e.g. ddim, dpm-solver++, "
                          "deis, unipc, heun, euler (default: the pipeline's sampler)")
    steps: Optional[int] = Field(None, ge=1, le=10_000, description="sampler mode: number of steps "
                                 "(default: the pipeline sampler's)")
    schedule: Optional[str] = Field(None, description="sampler mode: registered time grid (default: the "
                                    "exported sampler's own)")
    loop: Literal["scan", "unroll", "auto"] = Field(
        "auto", description="sampler mode: ONNX Scan loop, unrolled steps, or scan with unrolled fallback")
    verify_python: bool = Field(True, description="sampler mode: compare with the Python sampler that was "
                                "exported (Pipeline.sample with it)")

    def tolerances(self) -> tuple[float, float]:
        if self.fp16:
            default = 1e-2
        elif self.mode == "sampler":
            default = 1e-3
        else:
            default = 1e-4
        return (self.atol if self.atol is not None else default,
                self.rtol if self.rtol is not None else default)
