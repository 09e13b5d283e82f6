"""ONNX exporter plugin: verified denoiser and whole-sampler graphs, onnxruntime backend.
This module holds only hook implementations."""

from diffusekit import hookimpl

from .exporter import OnnxExporter

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_exporters(register):
    register("onnx", OnnxExporter)
