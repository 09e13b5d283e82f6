"""``diffusekit register SOURCE MODEL --run RUN``: the pose of a source cloud on a model cloud.

Point clouds: ``.npy`` (an (N, 3+) array, loaded without pickle), ``.xyz`` / ``.txt`` (whitespace
columns x y z ...) or ``.ply`` (vertex x, y, z; ascii or binary little / big endian). Prints the
4x4 pose (source -> model frame), writes it with ``--out`` (``.txt`` or ``.npy``, atomically)
and an overlay picture with ``--plot``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}


class CloudError(ValueError):
    """A point-cloud file that cannot be read (the message names the file and the fix)."""


def read_ply(path: Path) -> np.ndarray:
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise CloudError(f"{path}: not a PLY file (no 'ply' magic / 'end_header')")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt, count, props, in_vertex = None, 0, [], False
    for line in header:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            in_vertex = parts[1] == "vertex"
            if in_vertex:
                count = int(parts[2])
            elif count and not props:
                raise CloudError(f"{path}: the vertex element must come first")
        elif parts[0] == "property" and in_vertex:
            if parts[1] == "list":
                raise CloudError(f"{path}: list properties in the vertex element are not supported")
            props.append((parts[2], _PLY_TYPES.get(parts[1])))
    names = [p[0] for p in props]
    if not {"x", "y", "z"} <= set(names) or any(t is None for _, t in props):
        raise CloudError(f"{path}: the vertex element needs float x, y, z properties, got {names}")
    if fmt == "ascii":
        rows = body.decode("ascii").split("\n")[:count]
        arr = np.array([[float(v) for v in r.split()[:len(names)]] for r in rows], dtype=np.float64)
        cols = arr
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + t) for n, t in props])
        rec = np.frombuffer(body, dtype=dtype, count=count)
        cols = np.stack([rec[n].astype(np.float64) for n in names], -1)
    else:
        raise CloudError(f"{path}: unknown PLY format {fmt!r}")
    return cols[:, [names.index("x"), names.index("y"), names.index("z")]]


def read_cloud(path: str | os.PathLike) -> np.ndarray:
    """(N, 3) float64 points from .npy / .xyz / .txt / .ply."""
    p = Path(path)
    if not p.is_file():
        raise CloudError(f"{p}: no such file; pass a .ply, .npy, .xyz or .txt point cloud")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix in (".xyz", ".txt"):
            arr = np.loadtxt(p, ndmin=2)
        elif suffix == ".ply":
            arr = read_ply(p)
        else:
            raise CloudError(f"{p}: unknown point-cloud format {suffix!r}; use .ply, .npy, .xyz or .txt")
    except (OSError, ValueError) as exc:
        if isinstance(exc, CloudError):
            raise
        raise CloudError(f"{p}: cannot read the point cloud ({exc})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] < 3:
        raise CloudError(f"{p}: expected an (N >= 3, 3) array of points, got shape {arr.shape}")
    arr = arr[:, :3]
    if not np.isfinite(arr).all():
        raise CloudError(f"{p}: the cloud holds NaN or Inf coordinates")
    return arr


def _write_atomic(path: Path, pose: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            if path.suffix.lower() == ".npy":
                np.save(f, pose)
            else:
                np.savetxt(f, pose, fmt="%.9f")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def configure_register(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="source point cloud (.ply, .npy, .xyz, .txt)")
    p.add_argument("model", help="model point cloud in the target frame")
    p.add_argument("--run", required=True, help="directory of a trained SE(3) pipeline (Pipeline.save)")
    p.add_argument("--out", help="write the 4x4 pose here (.txt or .npy)")
    p.add_argument("--plot", help="write a PNG overlay of the aligned clouds")
    p.add_argument("--points", type=int, default=512, help="subsample each cloud to at most this many points")
    p.add_argument("--seed", type=int, default=0, help="seed of the reverse process and the subsampling")


def run_register(args) -> int:
    import torch

    import diffusekit as dk

    if args.points < 3:
        print(f"error: --points must be >= 3, got {args.points}", file=sys.stderr)
        return 2
    for name, value in (("--out", args.out), ("--plot", args.plot)):
        if value and Path(value).is_dir():
            print(f"error: {name} {value} is a directory; give a file path", file=sys.stderr)
            return 2
    if args.out and Path(args.out).suffix.lower() not in (".txt", ".npy"):
        print(f"error: --out must end in .txt or .npy, got {args.out}", file=sys.stderr)
        return 2
    try:
        src, mdl = read_cloud(args.source), read_cloud(args.model)
    except CloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    if src.shape[0] > args.points:
        src = src[rng.choice(src.shape[0], args.points, replace=False)]
    if mdl.shape[0] > args.points:
        mdl = mdl[rng.choice(mdl.shape[0], args.points, replace=False)]
    pipe = dk.Pipeline.load(args.run)
    cond = {"source": torch.from_numpy(src).float()[None], "model": torch.from_numpy(mdl).float()[None]}
    with torch.no_grad():
        pose = pipe.sample(1, cond=cond, generator=[args.seed])[0].double().numpy()
    np.set_printoptions(precision=6, suppress=True)
    print(pose)
    if args.out:
        _write_atomic(Path(args.out), pose)
        print(f"pose written to {args.out}")
    if args.plot:
        from .plot import overlay

        overlay(src, mdl, pose, args.plot)
        print(f"overlay written to {args.plot}")
    return 0
