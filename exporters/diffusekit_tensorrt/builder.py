"""Building TensorRT engines (needs an NVIDIA GPU and the ``tensorrt`` Python package).

Engines are cached by content: ``<cache_dir>/<onnx stem>-<key>.engine`` where the key hashes
the ONNX bytes, the build configuration, the TensorRT version and the GPU name
(:meth:`BuildConfig.cache_key`); a timing cache is read and written back so rebuilds are fast.
"""

from __future__ import annotations

from pathlib import Path

from diffusekit.errors import CompatibilityError, DiffusekitError

from .build_config import BuildConfig


class TensorRTBuildError(DiffusekitError, RuntimeError):
    """TensorRT could not parse or build the network (parser errors are listed)."""


def availability() -> tuple[bool, str]:
    """(can build, reason if not): a CUDA GPU visible to torch and ``import tensorrt``."""
    import torch

    if not torch.cuda.is_available():
        return False, ("TensorRT engines can only be built on a machine with an NVIDIA GPU "
                       "(torch.cuda.is_available() is False)")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt Python package is not installed (pip install tensorrt)"
    return True, ""


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def trt_version() -> str:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        return "unavailable"


def build_engine(cfg: BuildConfig, engine_path: Path) -> Path:  # pragma: no cover - needs a GPU
    """Parse the ONNX model, apply the profile / precision / timing cache, serialise the engine."""
    ok, reason = availability()
    if not ok:
        raise CompatibilityError(reason)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(cfg.onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"TensorRT could not parse {cfg.onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.builder_optimization_level = cfg.optimization_level
    if cfg.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if cfg.bf16:
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in cfg.profile.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache_file = Path(cfg.timing_cache) if cfg.timing_cache else None
    blob = cache_file.read_bytes() if cache_file is not None and cache_file.exists() else b""
    config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(f"TensorRT failed to build an engine from {cfg.onnx_path} (see the log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine_path
