"""Files that are never half-written: atomic writes, content hashes and output-path checks.

Every file diffusekit writes for a user (saved pipelines, checkpoints, sample shards and
outputs) goes through :func:`atomic_write`: the bytes go to a hidden temporary file in the
same directory, which is fsynced and renamed over the target (``os.replace``, atomic on POSIX
and Windows). A reader, a resumed run or a crash therefore sees either the old file or the
complete new one. :func:`check_output` validates an output path *before* any work starts, so
a long run never ends by failing to write its result.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import ConfigError


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory entry (a rename or a new file) to disk where the platform allows."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A hidden sibling of ``path`` (same filesystem, so ``os.replace`` is atomic) that keeps the
    suffix, because some writers (soundfile, matplotlib) infer the format from it."""
    return path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Any:
    """Write ``path`` atomically: ``writer(temp)`` writes a temporary file in the same
    directory, which is fsynced and renamed over ``path``. On any failure (including
    ``KeyboardInterrupt`` or a full disk) the temporary file is removed and ``path`` is left as
    it was. Returns what ``writer`` returns."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        result = writer(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return result


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """:func:`atomic_write` of a bytes object."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files an interrupted :func:`atomic_write` of ``path`` left behind."""
    for tmp in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        tmp.unlink(missing_ok=True)


# -- hashes ----------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    """One text per JSON value (sorted keys, no spaces): the input of a config hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of each tensor, names in sorted order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


# -- output paths ----------------------------------------------------------------------------


def _probe_directory(d: Path, loc: str, what: str) -> None:
    """Create ``d`` (and parents) and prove it takes a file; errors name ``loc`` and the fix."""
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{what} {str(d)!r} exists and is not a directory; choose another path",
                          loc=loc) from None
    except NotADirectoryError:
        raise ConfigError(f"{what} {str(d)!r}: a parent of it is a file, not a directory; choose another path",
                          loc=loc) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {str(d)!r}: {exc.strerror or exc}; choose a writable path",
                          loc=loc) from None
    probe = d / f".diffusekit-write-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise ConfigError(f"{what} {str(d)!r} is not writable: {exc.strerror or exc}; choose a writable path",
                          loc=loc) from None
    finally:
        probe.unlink(missing_ok=True)


def check_output_dir(path: str | os.PathLike, loc: str = "out") -> Path:
    """Check (before any work) that ``path`` is, or can be created as, a writable directory."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{str(d)!r} is a file; the output must be a directory (a new or existing one)",
                          loc=loc)
    _probe_directory(d, loc, "output directory")
    return d


def check_output_file(path: str | os.PathLike, loc: str = "out", suffixes: tuple[str, ...] | None = None) -> Path:
    """Check (before any work) that the file ``path`` can be written: its directory exists or can
    be created and takes files, ``path`` is not a directory, and its suffix is one of
    ``suffixes`` when given."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a directory; name a file", loc=loc)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise ConfigError(f"{str(p)!r}: unsupported file type {p.suffix or '(no suffix)'!r}; supported: "
                          f"{', '.join(sorted(suffixes))}", loc=loc)
    _probe_directory(p.parent if str(p.parent) else Path("."), loc, "output directory")
    return p
