"""The ``tensorrt`` exporter: verified ONNX export (via the ``onnx`` exporter), optimisation
profile, build configuration, content-addressed engine cache and, on a GPU, the engine build."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from diffusekit.config import validate_params
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.export import Exporter

from .build_config import BuildConfig
from .builder import availability, build_engine, device_name, trt_version
from .options import TensorRTOptions
from .profiles import derive_profile

PLAN_FILE = "tensorrt_build.json"


@dataclass
class TensorRTReport:
    """ONNX verification (``onnx``), the build plan and what happened to the engine."""

    engine: str | None
    built: bool
    cache_hit: bool
    reason: str
    cache_key: str
    onnx: dict[str, Any]
    build: dict[str, Any]
    polygraphy: list[str]
    trtexec: list[str]
    build_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_err(self) -> float:
        return float(self.onnx.get("max_abs_err", float("nan")))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_build(onnx_path: Path, opts: TensorRTOptions, cache_dir: Path) -> tuple[BuildConfig, str, Path]:
    """(build config, cache key, engine path) for an exported ONNX model."""
    import onnx

    from diffusekit_onnx import metadata

    model = onnx.load(str(onnx_path), load_external_data=False)
    meta = metadata.read(model)
    profile = derive_profile(model, opts.min_batch, opts.opt_batch, opts.max_batch, opts.dims,
                             meta.get("example_shapes"))
    timing = opts.timing_cache or str(cache_dir / "timing.cache")
    cfg = BuildConfig(str(onnx_path), profile, fp16=opts.fp16, bf16=opts.bf16, workspace_mb=opts.workspace_mb,
                      optimization_level=opts.optimization_level, timing_cache=timing)
    key = cfg.cache_key(onnx_path.read_bytes(), trt_version(), device_name())
    return cfg, key, cfg.engine_path(cache_dir, key)


class TensorRTExporter(Exporter):
    """``dk.export(pipe, "tensorrt", "run/model.engine", fp16=True, max_batch=64)``.

    Always exports and verifies the ONNX model next to the engine path and writes
    ``tensorrt_build.json`` (profile, flags, cache key, polygraphy / trtexec commands). With a
    GPU and the ``tensorrt`` package it builds the engine into the content-addressed cache (a
    cache hit skips the build) and copies it to ``path``; ``build="always"`` makes a missing GPU
    an error, ``build="never"`` stops after the plan.
    """

    backends = ("tensorrt",)

    def export(self, pipe, path, example: Sequence[Any] | None = None, **options) -> TensorRTReport:
        opts = validate_params(TensorRTOptions, options, loc="export")
        path = Path(path)
        if path.suffix not in (".engine", ".plan", ".trt"):
            raise ConfigError(f"TensorRT engine path should end in .engine (or .plan / .trt), got {str(path)!r}",
                              loc="path")
        can, reason = availability()
        if opts.build == "always" and not can:
            raise CompatibilityError(f"{reason}; use build='never' (or 'auto') to write the ONNX model and the "
                                     "build plan on this machine and build on a GPU machine")
        from diffusekit.api import create

        onnx_exporter = create("exporter", "onnx", loc="format")
        onnx_path = path.with_suffix(".onnx")
        onnx_report = onnx_exporter.export(pipe, onnx_path, example=example, mode=opts.mode, **opts.onnx)
        cache_dir = Path(opts.cache_dir) if opts.cache_dir else path.parent / "trt_cache"
        cfg, key, cached = plan_build(onnx_path, opts, cache_dir)
        built = hit = False
        seconds = 0.0
        engine = None
        if can and opts.build != "never":  # pragma: no cover - needs a GPU
            hit = cached.exists()
            if not hit:
                start = time.perf_counter()
                build_engine(cfg, cached)
                seconds = time.perf_counter() - start
                built = True
            path.write_bytes(cached.read_bytes())
            engine, reason = str(path), ("engine cache hit" if hit else "built")
        elif opts.build == "never":
            reason = "build='never': wrote the ONNX model and the build plan only"
        report = TensorRTReport(engine=engine, built=built, cache_hit=hit, reason=reason, cache_key=key,
                                onnx=onnx_report.as_dict(), build=cfg.as_dict(),
                                polygraphy=cfg.polygraphy_command(str(cached)),
                                trtexec=cfg.trtexec_command(str(cached)), build_seconds=seconds,
                                extra={"tensorrt": trt_version(), "device": device_name(),
                                       "cached_engine": str(cached)})
        (path.parent / PLAN_FILE).write_text(json.dumps(report.as_dict(), indent=2, default=str))
        return report

    @classmethod
    def load_runtime(cls, directory, pipe, backend: str = "tensorrt", device=None, file: str = "model.engine",
                     **kwargs):  # pragma: no cover - needs a GPU
        """Network stand-in running ``<directory>/model.engine`` (conditioner / folded CFG live in it)."""
        from diffusekit_onnx import metadata
        from diffusekit_onnx.runtime import EncodedInGraph

        from .runtime import TensorRTModule

        if kwargs:
            raise ConfigError(f"unknown tensorrt backend options {sorted(kwargs)}; accepted: file", loc="backend")
        path = Path(directory) / file
        if not path.exists():
            raise ConfigError(f"{path} not found; build it on a GPU machine: dk.export(pipe, 'tensorrt', '{path}')",
                              loc="backend")
        plan = json.loads((Path(directory) / PLAN_FILE).read_text()) if (Path(directory) / PLAN_FILE).exists() else {}
        onnx_path = path.with_suffix(".onnx")  # the verified ONNX model the engine was built from
        module = TensorRTModule(path, sample_shape=pipe.sample_shape,
                                meta=metadata.read(onnx_path) if onnx_path.exists() else None)
        meta = plan.get("onnx", {})
        if any(n == "cond" or n.startswith("cond.") for n in meta.get("inputs", [])) and pipe.conditioner is not None:
            pipe.conditioner = EncodedInGraph(pipe.conditioner)
        if meta.get("extra", {}).get("guidance_scale") is not None:
            pipe.guidance = [g for g in pipe.guidance if not g.foldable_cfg]
        return module
