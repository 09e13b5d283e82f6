"""onnxruntime sessions with real provider detection, and the network stand-in used by
``Pipeline.load(dir, backend="onnxruntime")``.

``onnxruntime-gpu`` lists the CUDA and TensorRT providers as *available* even on machines
without a GPU; only ``session.get_providers()`` says what really runs. Requested providers
that did not load are reported (``fallback``) and warned about, never claimed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from diffusekit import state as st
from diffusekit.conditioner import Conditioner
from diffusekit.errors import ConfigError
from diffusekit.network import Network

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def requested_providers(device: Any = None, providers: Sequence[str] | None = None) -> list[str]:
    """Providers to ask for: explicit names, else from the device ("cuda" -> CUDA then CPU)."""
    if providers:
        names = [PROVIDERS.get(p.lower(), p) if isinstance(p, str) else p for p in providers]
    else:
        kind = torch.device(device).type if device is not None else "cpu"
        if kind not in ("cpu", "cuda"):
            raise ConfigError(f"onnxruntime backend supports devices cpu and cuda, got {device!r}", loc="device")
        names = ["CUDAExecutionProvider"] if kind == "cuda" else []
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


def make_session(path, device: Any = None, providers: Sequence[str] | None = None, threads: int | None = None):
    """Create a session; returns ``(session, requested, actual, fallback)``.

    ``fallback`` lists requested providers that did not load (e.g. CUDA on a CPU-only
    machine); a ``RuntimeWarning`` says so.
    """
    import onnxruntime as ort

    req = requested_providers(device, providers)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    gpu_asked = any(p != "CPUExecutionProvider" for p in req)
    if gpu_asked:  # loading CUDA/TensorRT libraries without a GPU logs errors before falling back
        ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=req)
    except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
        from diffusekit.errors import ConfigError

        raise ConfigError(f"{path}: onnxruntime cannot open it ({type(exc).__name__}: {exc}); export it again",
                          loc="backend") from None
    finally:
        if gpu_asked:
            ort.set_default_logger_severity(2)
    actual = list(sess.get_providers())
    fallback = [p for p in req if p not in actual]
    if fallback:
        warnings.warn(f"onnxruntime: requested {req} but the session runs on {actual}; {fallback} could not be "
                      "loaded (no GPU, driver or CUDA/cuDNN libraries): running on the CPU", RuntimeWarning,
                      stacklevel=3)
    return sess, req, actual, fallback


_NP = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
       "tensor(int32)": np.int32, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
_TORCH = {"tensor(float)": torch.float32, "tensor(double)": torch.float64, "tensor(int64)": torch.int64,
          "tensor(int32)": torch.int32, "tensor(float16)": torch.float16, "tensor(bool)": torch.bool}


class OrtModule:
    """Calls an ONNX graph with torch tensors and returns torch tensors.

    On the CUDA provider with CUDA tensors it uses IO binding (no host copies); otherwise it
    feeds numpy arrays. Missing optional inputs (e.g. ``cond=None``) are an error naming them.
    """

    def __init__(self, path, device: Any = None, providers: Sequence[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.session, self.requested, self.providers, self.fallback = make_session(path, device, providers, threads)
        self.inputs = [(i.name, i.type) for i in self.session.get_inputs()]
        self.outputs = [(o.name, o.type) for o in self.session.get_outputs()]
        self.on_cuda = "CUDAExecutionProvider" in self.providers
        self.calls = 0

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self.inputs]

    def _feed(self, args: Sequence[Any]) -> dict[str, Any]:
        if len(args) != len(self.inputs):
            raise ConfigError(f"{self.path.name} takes inputs {self.input_names}, got {len(args)} values",
                              loc="inputs")
        return dict(zip(self.input_names, args))

    def run(self, *args: Any) -> list[torch.Tensor]:
        """Positional inputs (graph input order) -> outputs in graph output order."""
        out = self.run_named(self._feed(args))
        return [out[name] for name, _ in self.outputs]

    def run_named(self, feed: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{input name: value}`` -> ``{output name: tensor}`` (every graph input is required)."""
        missing = [n for n in self.input_names if feed.get(n) is None]
        if missing:
            raise ConfigError(f"{self.path.name} needs input(s) {missing} (the graph was exported with them; "
                              f"it takes {self.input_names}); pass a condition and every state leaf",
                              loc=missing[0])
        unknown = sorted(set(feed) - set(self.input_names))
        if unknown:
            raise ConfigError(f"{self.path.name} has no inputs {unknown}; it takes {self.input_names}",
                              loc=unknown[0])
        self.calls += 1
        if self.on_cuda and all(torch.is_tensor(v) and v.is_cuda for v in feed.values()):
            outs = self._run_bound(feed)
        else:
            np_feed = {}
            for (name, typ) in self.inputs:
                v = feed[name]
                arr = v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
                np_feed[name] = np.ascontiguousarray(arr.astype(_NP.get(typ, arr.dtype), copy=False))
            outs = [torch.from_numpy(np.asarray(o)) for o in self.session.run(None, np_feed)]
        return {name: o for (name, _), o in zip(self.outputs, outs)}

    def _run_bound(self, feed: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:  # pragma: no cover - needs CUDA
        binding = self.session.io_binding()
        keep = []
        for name, typ in self.inputs:
            v = feed[name].to(_TORCH.get(typ, feed[name].dtype)).contiguous()
            keep.append(v)
            binding.bind_input(name, "cuda", v.device.index or 0, _NP.get(typ, np.float32), tuple(v.shape), v.data_ptr())
        for name, _ in self.outputs:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        outs = binding.get_outputs()
        return [torch.from_dlpack(o.to_dlpack()) if hasattr(o, "to_dlpack") else torch.from_numpy(o.numpy())
                for o in outs]


def graph_feed(input_names: Sequence[str], x: Any, t: torch.Tensor, cond: Any = None,
               what: str = "the graph") -> dict[str, Any]:
    """``{graph input name: tensor}`` for a denoiser graph: one entry per leaf of the state
    (``x_t`` or ``x_t.<leaf>``), ``t``, and the condition's leaves (``cond`` / ``cond.<leaf>``)
    when the graph takes a condition."""
    feed: dict[str, Any] = dict(st.flatten(x, "x_t"))
    feed["t"] = t.to(torch.float32)
    takes_cond = any(n == "cond" or n.startswith("cond.") for n in input_names)
    if takes_cond:
        if cond is None:
            feed["cond"] = None  # named as missing by the session
        else:
            feed.update(st.flatten(cond, "cond") if st.is_state(cond) else {"cond": cond})
    elif cond is not None:
        raise ConfigError(f"{what} was exported without a condition input but a condition was given; "
                          "export with a conditional example", loc="cond")
    return feed


def graph_output(outputs: Mapping[str, torch.Tensor], meta: Mapping[str, Any], x: Any) -> Any:
    """The raw network output (a Tensor or the dict rebuilt from its leaves) on ``x``'s device.

    Graphs exported before per-leaf outputs (no ``raw_outputs`` metadata) return their first
    output. Floating outputs take the dtype of the matching state leaf; integer (token) states
    keep the output's float dtype (logits)."""
    kind = meta.get("output_kind")
    like = meta.get("raw_output_shape")
    if meta.get("raw_outputs") is None or like is None or kind is None:
        out: Any = next(iter(outputs.values()))
    else:
        out = st.unflatten({n: outputs[n] for n in meta["raw_outputs"]}, like, prefix=kind)

    def place(o: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        dtype = ref.dtype if (ref.is_floating_point() or ref.is_complex()) else o.dtype
        return o.to(device=ref.device, dtype=dtype)

    if set(st.flatten(out)) == set(st.flatten(x)):
        return st.zip_map(place, out, x)
    return st.to(out, device=st.device_of(x))


class OnnxNetwork(Network):
    """A stand-in for ``network(x_t, t, cond)`` backed by an exported denoiser graph.

    Feeds every leaf of the state as its own graph input and returns the graph's raw outputs
    (the parameterization's kind), reassembled into a dict for dict states, on ``x_t``'s
    device. The graph already contains the conditioner and any folded CFG, so the onnxruntime
    backend removes those from the pipeline (see :meth:`OnnxExporter.load_runtime`).
    """

    def __init__(self, module: OrtModule, sample_shape=None, meta: dict | None = None):
        super().__init__()
        self.ort = module
        self.sample_shape = sample_shape
        self.meta = dict(meta or {})

    @property
    def providers(self) -> list[str]:
        return self.ort.providers

    @property
    def fallback(self) -> list[str]:
        return self.ort.fallback

    def forward(self, x: Any, t: torch.Tensor, cond: Any = None) -> Any:
        feed = graph_feed(self.ort.input_names, x, t, cond, what=self.ort.path.name)
        return graph_output(self.ort.run_named(feed), self.meta, x)

    def __repr__(self) -> str:
        return f"OnnxNetwork({self.ort.path.name}, providers={self.providers})"


class EncodedInGraph(Conditioner):
    """Stands in for a conditioner whose encoding runs inside the exported graph: passes raw
    conditions through unchanged but keeps ``null`` (so unfolded CFG in Python still works)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, cond: Any) -> Any:
        return cond

    def null(self, cond: Any) -> Any:
        return self.inner.null(cond)

    def __repr__(self) -> str:
        return f"EncodedInGraph({type(self.inner).__name__})"
