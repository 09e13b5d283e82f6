"""The TensorRT build configuration: precision, profile, workspace, timing cache, and the
engine-cache key (sha256 over the ONNX bytes, the configuration and the TensorRT version), plus
the equivalent ``polygraphy convert`` and ``trtexec`` command lines."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .profiles import Profile


@dataclass(frozen=True)
class BuildConfig:
    onnx_path: str
    profile: Profile
    fp16: bool = False
    bf16: bool = False
    workspace_mb: int = 2048
    optimization_level: int = 3
    timing_cache: str | None = None

    def key_fields(self) -> dict[str, Any]:
        """What determines the engine (paths excluded: moving files keeps the cache valid)."""
        return {"profile": self.profile.as_dict(), "fp16": self.fp16, "bf16": self.bf16,
                "workspace_mb": self.workspace_mb, "optimization_level": self.optimization_level}

    def cache_key(self, onnx_bytes: bytes, trt_version: str = "unknown", device: str = "unknown") -> str:
        """Content hash naming the cached engine: same model + settings + TensorRT + GPU = same engine."""
        h = hashlib.sha256()
        h.update(hashlib.sha256(onnx_bytes).digest())
        h.update(json.dumps(self.key_fields(), sort_keys=True).encode())
        h.update(f"trt={trt_version};device={device}".encode())
        return h.hexdigest()

    def engine_path(self, cache_dir: Path, key: str) -> Path:
        return Path(cache_dir) / f"{Path(self.onnx_path).stem}-{key[:16]}.engine"

    def polygraphy_command(self, engine: str) -> list[str]:
        """``polygraphy convert`` building the same engine (NVIDIA's demo tooling)."""
        cmd = ["polygraphy", "convert", self.onnx_path, "--convert-to", "trt", "-o", engine,
               "--trt-min-shapes", *self.profile.flags(0),
               "--trt-opt-shapes", *self.profile.flags(1),
               "--trt-max-shapes", *self.profile.flags(2),
               f"--pool-limit=workspace:{self.workspace_mb}M",
               f"--builder-optimization-level={self.optimization_level}"]
        if self.fp16:
            cmd.append("--fp16")
        if self.bf16:
            cmd.append("--bf16")
        if self.timing_cache:
            cmd += ["--load-timing-cache", self.timing_cache, "--save-timing-cache", self.timing_cache]
        return cmd

    def trtexec_command(self, engine: str) -> list[str]:
        cmd = ["trtexec", f"--onnx={self.onnx_path}", f"--saveEngine={engine}",
               f"--minShapes={self.profile.trtexec(0)}", f"--optShapes={self.profile.trtexec(1)}",
               f"--maxShapes={self.profile.trtexec(2)}", f"--memPoolSize=workspace:{self.workspace_mb}M",
               f"--builderOptimizationLevel={self.optimization_level}"]
        if self.fp16:
            cmd.append("--fp16")
        if self.bf16:
            cmd.append("--bf16")
        if self.timing_cache:
            cmd.append(f"--timingCacheFile={self.timing_cache}")
        return cmd

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = self.profile.as_dict()
        return d
