"""Save / load pipelines: ``config.json`` + ``model.safetensors`` (never pickle)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def state_tensors(pipe) -> dict[str, torch.Tensor]:
    """Flat ``{prefix.name: tensor}`` of every module's state and the pipeline buffers."""
    out: dict[str, torch.Tensor] = {}
    for k, v in pipe.model.state_dict().items():  # network.*, conditioner.*, guidance.*
        out[k] = v.detach().cpu().contiguous()
    for k, v in pipe.buffers.items():
        out[f"buffer.{k}"] = v.detach().cpu().contiguous()
    return out


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        out["diffusekit"] = metadata.version("diffusekit")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        out["diffusekit"] = "unknown"
    return out


def save_pipeline(pipe, directory) -> None:
    from safetensors.torch import save_file

    from .plugins import get_registry

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg = pipe.config
    if cfg.get("network") is None:
        raise ConfigError(
            "the network was not created from the registry, so config.json could not rebuild it; "
            "register it (register_networks hook or dk.registry().register) and create it by name",
            loc="network")
    reg = get_registry()
    provenance = {}
    for kind in ("process", "parameterization", "network", "sampler", "conditioner"):
        spec = cfg.get(kind)
        if spec:
            p = reg.get(kind, spec["name"]).provenance
            provenance[kind] = {"name": spec["name"], "plugin": p.plugin, "distribution": p.distribution,
                                "version": p.version}
    doc = {"format": FORMAT_VERSION, "pipeline": cfg, "versions": versions(), "provenance": provenance}
    (d / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=False))
    metadata = {"format": str(FORMAT_VERSION), "diffusekit": doc["versions"]["diffusekit"]}
    save_file(state_tensors(pipe), str(d / WEIGHTS_FILE), metadata=metadata)


def read_config(directory) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path} not found; is {directory!s} a directory written by Pipeline.save?")
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or "pipeline" not in doc:
        raise ConfigError(f"{path} is not a diffusekit pipeline config (no 'pipeline' key)")
    return doc


def load_state(pipe, directory, strict: bool = True) -> None:
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    tensors = load_file(str(path))
    weights = {k: v for k, v in tensors.items() if not k.startswith("buffer.")}
    missing, unexpected = pipe.model.load_state_dict(weights, strict=False)
    if strict and (missing or unexpected):
        where = (missing or unexpected)[0].split(".")[0]
        raise ConfigError(f"{path}: {where} weights do not match the config (missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]})", loc=where)
    pipe.buffers = {k[len("buffer."):]: v for k, v in tensors.items() if k.startswith("buffer.")}


def load_pipeline(directory, backend: str = "torch", network=None, device=None, **kwargs):
    from .pipeline import Pipeline
    from .plugins import get_registry

    doc = read_config(directory)
    cfg = dict(doc["pipeline"])
    if network is not None:
        cfg["network"] = network
    cfg = {k: v for k, v in cfg.items() if v is not None}
    pipe = Pipeline.from_config(cfg)
    load_state(pipe, directory)
    if device is not None:
        pipe.to(device)
    if backend != "torch":
        reg = get_registry()
        from .export import Exporter

        exporters = [s.obj for s in reg.specs("exporter") if isinstance(s.obj, type) and issubclass(s.obj, Exporter)]
        runtimes = [e for e in exporters if backend in e.backends]
        if not runtimes:
            raise ConfigError(
                f"unknown backend {backend!r}; backends: torch, "
                + ", ".join(sorted({b for e in exporters for b in e.backends})), loc="backend")
        pipe.network = runtimes[0].load_runtime(directory, pipe, backend=backend, device=device, **kwargs)
    return pipe
