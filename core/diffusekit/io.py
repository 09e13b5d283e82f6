"""Save / load pipelines: ``config.json`` + ``model.safetensors`` (never pickle)."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, WriteError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: 2: a journal makes saves atomic; config.json records the weights' sha256 and the weights
#: the config they belong to. Format 1 (no hashes) is still read.
FORMAT_VERSION = 2


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


#: written while a save commits: lists the complete, fsynced staged files that replace the
#: run's files; its presence at load means "finish the commit" (redo), its absence means the
#: old files are the run
JOURNAL_FILE = ".save-journal.json"
#: hidden directory inside the run where a save writes its files before the commit; everything
#: in it belongs to an unfinished save (including the temporary files safetensors itself creates
#: beside its destination), so it is removed whole once no commit needs it
STAGING_DIR = ".save-staging"
#: pipeline keys that do not change what the weights mean (a different sampler is a choice at
#: sampling time); edits of any other key of config.json are refused at load
NOT_BOUND_TO_WEIGHTS = ("sampler",)


def _pending(d: Path, name: str) -> Path:
    return d / STAGING_DIR / name


def _legacy_pending(d: Path, name: str) -> Path:
    """Where saves before the staging directory wrote their files (still cleaned up)."""
    return d / f".{name}.pending"


def _provenance(cfg: dict) -> dict:
    from .plugins import get_registry

    reg = get_registry()
    provenance = {}
    for kind in ("process", "parameterization", "network", "sampler", "conditioner"):
        spec = cfg.get(kind)
        if spec:
            p = reg.get(kind, spec["name"]).provenance
            provenance[kind] = {"name": spec["name"], "plugin": p.plugin, "distribution": p.distribution,
                                "version": p.version}
    return provenance


def weights_config(cfg: dict) -> dict:
    """The keys of a pipeline config that define what its weights mean (all but the sampler)."""
    return {k: v for k, v in cfg.items() if k not in NOT_BOUND_TO_WEIGHTS}


def save_pipeline(pipe, directory) -> None:
    """Save atomically (see ``docs/reliability.md``).

    1. ``model.safetensors`` and ``config.json`` are written completely into the hidden staging
       directory and fsynced; the weights' metadata holds the hash of the pipeline config they
       belong to, ``config.json`` the sha256 of the weights file.
    2. A journal naming both is written atomically: from here on the save is committed.
    3. The staged files are renamed over the run's files; the journal and the staging directory
       are removed.

    A crash or a full disk before step 2 leaves the previous run untouched (the staging
    directory is ignored, and removed by the next save or load); after step 2, the next load
    finishes the renames. A run is never a new config paired with old weights, and a failure
    never leaves large temporary files.
    """
    from safetensors.torch import save_file

    from .files import (atomic_write_json, canonical_json, fsync_dir, fsync_file, remove_stale_temps, sha256_file,
                        sha256_text)

    d = Path(directory)
    cfg = pipe.config
    if cfg.get("network") is None:
        raise ConfigError(
            "the network was not created from the registry, so config.json could not rebuild it; "
            "register it (register_networks hook or dk.registry().register) and create it by name",
            loc="network")
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{str(d)!r} is a file; Pipeline.save needs a directory", loc="directory")
    d.mkdir(parents=True, exist_ok=True)
    _recover(d)
    remove_stale_temps(d / JOURNAL_FILE)  # a journal write that was itself interrupted
    weights_pending, config_pending = _pending(d, WEIGHTS_FILE), _pending(d, CONFIG_FILE)
    try:
        weights_pending.parent.mkdir(exist_ok=True)
        bound = canonical_json(weights_config(cfg))
        metadata = {"format": str(FORMAT_VERSION), "diffusekit": versions()["diffusekit"],
                    "config_sha256": sha256_text(bound), "config": bound}
        save_file(state_tensors(pipe), str(weights_pending), metadata=metadata)
        fsync_file(weights_pending)
        doc = {"format": FORMAT_VERSION, "pipeline": cfg, "versions": versions(), "provenance": _provenance(cfg),
               "metadata": dict(pipe.metadata),
               "files": {WEIGHTS_FILE: {"sha256": sha256_file(weights_pending),
                                        "bytes": weights_pending.stat().st_size}}}
        config_pending.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        fsync_file(config_pending)
        fsync_dir(d)
        fsync_dir(weights_pending.parent)
        atomic_write_json(d / JOURNAL_FILE, {CONFIG_FILE: f"{STAGING_DIR}/{CONFIG_FILE}",
                                             WEIGHTS_FILE: f"{STAGING_DIR}/{WEIGHTS_FILE}"})
    except BaseException as exc:
        shutil.rmtree(d / STAGING_DIR, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, (ConfigError, WriteError)):
            raise WriteError(f"could not save the pipeline to {d} ({exc}); the run there is unchanged. Free disk "
                             "space or choose another directory") from exc
        raise
    _recover(d)


def _recover(d: Path) -> None:
    """Finish a committed save that was interrupted (journal present), or drop the staged files
    of an uncommitted one."""
    from .files import fsync_dir

    journal = d / JOURNAL_FILE
    if journal.exists():
        try:
            names = json.loads(journal.read_text())
        except (OSError, ValueError):  # the journal is written atomically; unreadable = not ours
            raise ConfigError(f"{journal} is unreadable; remove it if no save is running", loc="directory") from None
        for final, pending in names.items():
            if (d / pending).exists():
                os.replace(d / pending, d / final)
        fsync_dir(d)
        journal.unlink()
        fsync_dir(d)
    shutil.rmtree(d / STAGING_DIR, ignore_errors=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        _legacy_pending(d, name).unlink(missing_ok=True)


def read_config(directory) -> dict[str, Any]:
    d = Path(directory)
    if (d / JOURNAL_FILE).exists():
        try:
            _recover(d)
        except OSError as exc:
            raise ConfigError(f"{d} holds an interrupted save that could not be completed ({exc}); open it "
                              "once with write access", loc="directory") from None
    path = d / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path} not found; is {directory!s} a directory written by Pipeline.save?")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore it or save the pipeline again",
                          loc="config") from None
    if not isinstance(doc, dict) or "pipeline" not in doc:
        raise ConfigError(f"{path} is not a diffusekit pipeline config (no 'pipeline' key)")
    fmt = doc.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ConfigError(f"{path}: format {fmt!r} is not a diffusekit save format (1..{FORMAT_VERSION})",
                          loc="format")
    if fmt > FORMAT_VERSION:
        raise ConfigError(f"{path} has format {fmt}, written by a newer diffusekit ("
                          f"{doc.get('versions', {}).get('diffusekit', '?')}); this one reads formats up to "
                          f"{FORMAT_VERSION}: upgrade diffusekit", loc="format")
    return doc


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        return out
    return [] if a == b else [f"{where or 'value'}: saved {a!r}, now {b!r}"]


def config_differences(saved: dict, current: dict) -> list[str]:
    """Human-readable ``key: saved X, now Y`` lines of two pipeline configs."""
    return _differences(json.loads(json.dumps(saved, default=str)), json.loads(json.dumps(current, default=str)))


def verify_files(directory, doc: dict) -> None:
    """Check a format-2 save: the weights file's hash and that config.json still holds the
    config the weights were saved with (only the sampler may be edited)."""
    from safetensors import safe_open

    from .errors import IntegrityError
    from .files import canonical_json, sha256_file

    d = Path(directory)
    path = d / WEIGHTS_FILE
    entry = doc.get("files", {}).get(WEIGHTS_FILE, {})
    if not path.exists():
        raise IntegrityError(f"{path} is missing; the run is incomplete (copy it again or retrain)")
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise IntegrityError(f"{path} does not match the sha256 recorded in {d / CONFIG_FILE}: the weights were "
                             "changed or damaged after saving (copy the run again, or save it again)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise IntegrityError(f"{path} is not a readable safetensors file ({exc})") from None
    if "config" in meta:
        saved = json.loads(meta["config"])
        current = weights_config(doc["pipeline"])
        if canonical_json(saved) != canonical_json(current):
            diffs = config_differences(saved, current)
            raise ConfigError(
                f"{d / CONFIG_FILE} was edited after the weights were saved ({'; '.join(diffs[:6])}); these keys "
                "define what the weights mean. Restore them, or build a new Pipeline with the changed config and "
                f"train it. Only {list(NOT_BOUND_TO_WEIGHTS)} may change (or pass sampler= to sample()).",
                loc=diffs[0].split(":")[0] if diffs else "config")


def check_provenance(directory, doc: dict) -> None:
    """Warn when a component now comes from a different plugin than when the run was saved."""
    import warnings

    from .plugins import get_registry

    reg = get_registry()
    for kind, saved in (doc.get("provenance") or {}).items():
        if (kind, saved.get("name")) not in reg:
            continue
        p = reg.get(kind, saved["name"]).provenance
        if (p.plugin, p.distribution) != (saved.get("plugin"), saved.get("distribution")):
            warnings.warn(
                f"{directory}: {kind} {saved['name']!r} was saved from plugin {saved.get('plugin')!r} "
                f"({saved.get('distribution')} {saved.get('version')}) but now comes from plugin {p.plugin!r} "
                f"({p.distribution} {p.version}); results may differ", stacklevel=3)


def load_state(pipe, directory, strict: bool = True) -> None:
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; the run is incomplete (copy it again or retrain)",
                          loc="weights") from None
    except Exception as exc:  # safetensors' own error types for damaged files
        from .errors import IntegrityError

        raise IntegrityError(f"{path} is not a readable safetensors file ({exc}); copy the run again or retrain") \
            from None
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
    if doc["format"] >= 2:
        verify_files(directory, doc)
    check_provenance(directory, doc)
    cfg = dict(doc["pipeline"])
    if network is not None:
        cfg["network"] = network
    cfg = {k: v for k, v in cfg.items() if v is not None}
    pipe = Pipeline.from_config(cfg)
    pipe.metadata = dict(doc.get("metadata") or {})
    load_state(pipe, directory)
    if device is not None:
        if backend != "torch" and torch.device(device).type == "cuda" and not torch.cuda.is_available():
            # runtimes fall back to their CPU provider (with a warning); the torch parts stay on CPU
            pass
        else:
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
