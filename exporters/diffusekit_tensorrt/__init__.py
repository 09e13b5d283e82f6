"""TensorRT exporter plugin: ONNX export + optimisation profiles + cached engine builds.
This module holds only hook implementations."""

from diffusekit import hookimpl

from .exporter import TensorRTExporter

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_exporters(register):
    register("tensorrt", TensorRTExporter)
