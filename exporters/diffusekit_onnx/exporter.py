"""The ``onnx`` exporter component and the ``onnxruntime`` backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from diffusekit.config import validate_params
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.export import Exporter

from . import metadata
from .options import ExportOptions
from .report import ExportReport

DENOISER_FILE = "model.onnx"


def require_onnx_stack() -> None:
    """Fail early, naming the extra, when onnx / onnxscript / onnxruntime are missing."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise CompatibilityError(f"the onnx exporter needs {missing}: pip install 'diffusekit[onnx]' "
                                 "(onnxruntime-gpu provides onnxruntime; do not install both)")


class OnnxExporter(Exporter):
    """``dk.export(pipe, "onnx", path, mode="denoiser" | "sampler", fp16=False, ...)``.

    Exports with the torch dynamo exporter, then verifies (full checker, strict shape
    inference, symbolic batch, onnxruntime CPU vs PyTorch on two input shapes with atol +
    rtol) and returns an :class:`ExportReport`. Options: :class:`ExportOptions`; ``example``
    may give ``(x_t, t, cond)`` for pipelines whose network has no ``example_inputs``.
    """

    backends = ("onnxruntime",)

    def export(self, pipe, path, example: Sequence[Any] | None = None, **options) -> ExportReport:
        opts = validate_params(ExportOptions, options, loc="export")
        require_onnx_stack()
        modes = [(m, m.training) for m in pipe.modules().values()]
        try:
            if opts.mode == "sampler":
                from .export_sampler import export_sampler

                return export_sampler(pipe, path, opts, example)
            from .export_denoiser import export_denoiser

            return export_denoiser(pipe, path, opts, example)
        finally:  # exporting evaluates in eval mode; give the pipeline back as it was
            for m, mode in modes:
                m.train(mode)

    @classmethod
    def load_runtime(cls, directory, pipe, backend: str = "onnxruntime", device=None, file: str = DENOISER_FILE,
                     providers: Sequence[str] | None = None, threads: int | None = None, check_weights: bool = True,
                     **kwargs):
        """The network stand-in for ``Pipeline.load(dir, backend="onnxruntime")``.

        The denoiser graph contains the conditioner and any folded classifier-free guidance,
        so the pipeline's conditioner becomes a pass-through (:class:`EncodedInGraph`, keeping
        ``null`` for unfolded CFG) and folded CFG is dropped from ``pipe.guidance``, keeping the
        sampled values identical to the PyTorch pipeline. Dict states are fed leaf by leaf and
        the network output is rebuilt from the per-leaf graph outputs.
        ``device="cuda"`` asks for the CUDA provider; ``network.providers`` says what runs and
        ``network.fallback`` what could not be loaded.
        """
        from .runtime import EncodedInGraph, OnnxNetwork, OrtModule

        if kwargs:
            raise ConfigError(f"unknown onnxruntime backend options {sorted(kwargs)}; accepted: file, providers, "
                              "threads, check_weights", loc="backend")
        require_onnx_stack()
        path = Path(directory) / file
        if not path.exists():
            raise ConfigError(f"{path} not found; export first: dk.export(pipe, 'onnx', '{path}') or "
                              f"`diffusekit export {directory} --format onnx`", loc="backend")
        try:
            meta = metadata.read(path)
        except Exception as exc:  # onnx / protobuf raise their own types for damaged files
            raise ConfigError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); export it again: "
                              f"`diffusekit export {directory} --format onnx`", loc="backend") from None
        if meta.get("mode") != "denoiser":
            raise ConfigError(f"{path} is a {meta.get('mode')!r} graph; the onnxruntime backend needs a denoiser "
                              "export (mode='denoiser')", loc="backend")
        if check_weights and meta.get("weights_sha256") not in (None, metadata.weights_hash(pipe)):
            raise ConfigError(f"{path} was exported from different weights than {directory}/model.safetensors; "
                              "re-export after saving (or pass check_weights=False)", loc="backend")
        net = OnnxNetwork(OrtModule(path, device=device, providers=providers, threads=threads),
                          sample_shape=pipe.sample_shape, meta=meta)
        if meta.get("conditioner_in_graph") and pipe.conditioner is not None:
            pipe.conditioner = EncodedInGraph(pipe.conditioner)
        if meta.get("guidance_folded"):
            pipe.guidance = [g for g in pipe.guidance if not g.foldable_cfg]
        return net
