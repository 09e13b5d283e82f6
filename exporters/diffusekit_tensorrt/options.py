"""Validated options of the TensorRT exporter."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from diffusekit.config import ComponentConfig


class TensorRTOptions(ComponentConfig):
    """``dk.export(pipe, "tensorrt", "model.engine", ...)``; unknown keys are errors."""

    mode: Literal["denoiser", "sampler"] = Field("denoiser", description="what the ONNX stage exports")
    fp16: bool = Field(False, description="allow float16 kernels (BuilderFlag.FP16)")
    bf16: bool = Field(False, description="allow bfloat16 kernels (BuilderFlag.BF16, Ampere and newer)")
    min_batch: int = Field(1, ge=1, description="optimisation profile: smallest batch")
    opt_batch: int = Field(8, ge=1, description="optimisation profile: batch TensorRT tunes for")
    max_batch: int = Field(64, ge=1, description="optimisation profile: largest batch")
    dims: dict[str, tuple[int, int, int]] = Field(
        default_factory=dict, description="other symbolic dims: {dim_param: (min, opt, max)}; "
                                          "default: the export example's size (min = opt = max)")
    workspace_mb: int = Field(2048, ge=16, description="builder memory pool limit (workspace) in MiB")
    optimization_level: int = Field(3, ge=0, le=5, description="builder optimisation level")
    timing_cache: Optional[str] = Field(None, description="timing-cache file (read and updated); "
                                        "default: <cache_dir>/timing.cache")
    cache_dir: Optional[str] = Field(None, description="engine cache directory (default: next to the engine)")
    build: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: build when a CUDA GPU and the tensorrt package are present; always: fail "
                            "otherwise; never: write the ONNX model and the build plan only")
    onnx: dict = Field(default_factory=dict, description="options passed to the onnx exporter (e.g. steps)")

    @model_validator(mode="after")
    def _profile_order(self):
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"batch profile must satisfy min_batch <= opt_batch <= max_batch, got "
                             f"{self.min_batch} / {self.opt_batch} / {self.max_batch}")
        for name, (lo, opt, hi) in self.dims.items():
            if not 1 <= lo <= opt <= hi:
                raise ValueError(f"dims[{name!r}] must satisfy 1 <= min <= opt <= max, got {(lo, opt, hi)}")
        return self
