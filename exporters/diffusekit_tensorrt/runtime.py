"""Running a TensorRT engine on torch CUDA tensors (``execute_async_v3`` on the current
stream; outputs allocated by torch). Needs a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .builder import availability


class TensorRTModule(torch.nn.Module):  # pragma: no cover - needs a GPU
    """``module(*inputs) -> [outputs]`` for a serialised engine; inputs are moved to CUDA."""

    def __init__(self, engine_path, sample_shape=None, meta: dict | None = None):
        super().__init__()
        ok, reason = availability()
        if not ok:
            from diffusekit.errors import CompatibilityError

            raise CompatibilityError(reason)
        import tensorrt as trt

        self._trt = trt
        self.path = Path(engine_path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.path.read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.sample_shape = sample_shape
        self.meta = dict(meta or {})  # the ONNX model's diffusekit metadata (output names / nesting)
        self.providers = ["TensorRT"]

    def _dtype(self, name: str) -> torch.dtype:
        import numpy as np

        return torch.from_numpy(np.zeros(0, dtype=self._trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def run(self, *args: Any) -> list[torch.Tensor]:
        """Positional inputs (engine input order) -> outputs in engine output order."""
        out = self.run_named(dict(zip(self.inputs, args)))
        return [out[n] for n in self.outputs]

    def run_named(self, feed: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{input name: value}`` -> ``{output name: tensor}``."""
        missing = [n for n in self.inputs if feed.get(n) is None]
        if missing:
            from diffusekit.errors import ConfigError

            raise ConfigError(f"{self.path.name} needs input(s) {missing}; it takes {self.inputs}", loc=missing[0])
        keep = []
        for name in self.inputs:
            v = torch.as_tensor(feed[name]).to("cuda", self._dtype(name)).contiguous()
            keep.append(v)
            self.context.set_input_shape(name, tuple(v.shape))
            self.context.set_tensor_address(name, v.data_ptr())
        outs = {}
        for name in self.outputs:
            o = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name), device="cuda")
            self.context.set_tensor_address(name, o.data_ptr())
            outs[name] = o
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {self.path.name} failed")
        return outs

    def forward(self, x, t, cond=None):
        """``network(x_t, t, cond)``: one engine input per state leaf, the raw output rebuilt."""
        from diffusekit_onnx.runtime import graph_feed, graph_output

        feed = graph_feed(self.inputs, x, t, cond, what=self.path.name)
        return graph_output(self.run_named(feed), self.meta, x)
