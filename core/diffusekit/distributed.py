"""Scale-out over ``torchrun`` ranks: sharded sampling, sharded work lists and distributed
metric reductions, exact across world sizes.

* :func:`init` starts the process group once (gloo on CPU, NCCL on CUDA) when a launcher set
  ``WORLD_SIZE > 1`` and does nothing otherwise; :func:`shutdown` tears it down; :func:`rank`, :func:`world_size`,
  :func:`local_rank`, :func:`is_main`, :func:`barrier` and :func:`all_reduce` work with or
  without a launcher (one process is rank 0 of a world of 1).
* :func:`shard_range` splits ``n`` items into disjoint contiguous ranges, one per rank.
* :func:`sample` draws ``n`` samples of a pipeline into a directory of shards plus a manifest.
  Sample ``i`` uses the per-sample generator seeded ``seed + i``; shard ``k`` holds samples
  ``[k * batch_size, min((k + 1) * batch_size, n))`` and is drawn as one batch. Shards depend
  only on ``(n, batch_size)``, never on the world size, so any number of processes (and any
  resume) writes the same bytes. :func:`load_samples` verifies the manifest and concatenates.
* :func:`evaluate` computes a metric with every rank scoring its own share and the partial
  sums all-reduced (:mod:`diffusekit.metrics`).
* :func:`propagate_errors`: a failure on one rank is reported on every rank instead of leaving
  the others waiting at the next collective.

See ``docs/scaling.md`` for launch commands, the manifest format and what is exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from . import state as st
from .config import check_number
from .errors import ConfigError, DiffusekitError, IntegrityError
from .fit import batch_coupling
# atomic writes and hashes live in diffusekit.files (re-exported: dk.distributed.atomic_write)
from .files import atomic_write, atomic_write_bytes, tensors_sha256  # noqa: F401
from .files import canonical_json as _canonical
from .files import remove_stale_temps as _remove_stale_temps
from .files import sha256_text as _sha256_text

#: ``format`` field of a sample manifest and of each shard's safetensors metadata
SAMPLES_FORMAT = "diffusekit-samples"
SAMPLES_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
#: the safetensors key of a Tensor state; a dict state has one key per leaf (``samples.adj``)
SAMPLES_KEY = "samples"
SEED_RULE = "sample i (0-based) is drawn with the per-sample generator torch.Generator().manual_seed(seed + i)"
SHARD_RULE = ("shard k holds samples [k * batch_size, min((k + 1) * batch_size, n)) and is drawn as one batch; "
              "shards are assigned to ranks in contiguous blocks (shard_range(num_shards, rank, world_size))")

# ---------------------------------------------------------------------------------------------
# process group
# ---------------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; it is set by the launcher "
                          "(torchrun / srun): unset it or launch through torchrun", loc=name) from None


def _dist():
    import torch.distributed as dist

    return dist


def is_initialized() -> bool:
    """True when a torch.distributed process group is running."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def init(backend: str | None = None) -> bool:
    """Start the process group when launched with ``WORLD_SIZE > 1`` (torchrun, SLURM + torchrun).

    Idempotent; without a launcher (or with one process) it does nothing and returns False.
    The backend is NCCL when CUDA is available (the rank's device is ``cuda:LOCAL_RANK``) and
    gloo otherwise; ``backend`` overrides it. Returns True when a process group is running.
    """
    if is_initialized():
        return True
    if _env_int("WORLD_SIZE", 1) <= 1:
        return False
    dist = _dist()
    if not dist.is_available():
        raise DiffusekitError("WORLD_SIZE > 1 but this torch build has no torch.distributed; install a torch "
                              "build with distributed support or launch one process")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def shutdown(orderly: bool = True) -> None:
    """Tear the process group down (no-op without one).

    ``orderly`` first waits for every rank, so no process leaves while another is still in a
    collective; pass False on an error path, where a peer may never arrive. Exiting without
    this lets gloo's threads be torn down by the interpreter, which can abort the process
    (``terminate called without an active exception``) after its work finished."""
    if not is_initialized():
        return
    dist = _dist()
    try:
        if orderly:
            barrier()
    finally:
        dist.destroy_process_group()


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return _dist().get_rank() if is_initialized() else _env_int("RANK", 0)


def world_size() -> int:
    """Number of processes (1 without a launcher)."""
    return _dist().get_world_size() if is_initialized() else max(1, _env_int("WORLD_SIZE", 1))


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``; 0 without a launcher)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """True on global rank 0 (the process that writes shared files and prints summaries)."""
    return rank() == 0


def device() -> torch.device:
    """The device this rank should compute on: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def _collective_device() -> torch.device:
    if is_initialized() and _dist().get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if not is_initialized() or world_size() == 1:
        return
    dist = _dist()
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


_OPS = ("sum", "min", "max")


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """The element-wise ``op`` (``"sum"``, ``"min"``, ``"max"``) of ``tensor`` over all ranks.

    Returns a new tensor on ``tensor``'s device (the input itself without a process group)."""
    if op not in _OPS:
        raise ConfigError(f"unknown reduction {op!r}; use one of {list(_OPS)}", loc="op")
    if not is_initialized() or world_size() == 1:
        return tensor
    dist = _dist()
    work = tensor.detach().to(_collective_device(), copy=True)
    dist.all_reduce(work, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return work.to(tensor.device)


def failed_ranks(failed: bool) -> list[int]:
    """Every rank says whether it failed; returns the failed ranks (a collective: call on all ranks)."""
    flags = torch.zeros(world_size(), dtype=torch.int64)
    flags[rank()] = int(bool(failed))
    flags = all_reduce(flags)
    return [r for r in range(flags.numel()) if int(flags[r])]


@contextlib.contextmanager
def propagate_errors(what: str) -> Iterator[None]:
    """Run a block on every rank and agree afterwards on whether it worked.

    A rank whose block raised re-raises its own error; the other ranks raise a
    :class:`~diffusekit.errors.DiffusekitError` naming the failed ranks, instead of waiting at
    the next collective until the process group times out. Without a process group the block
    simply runs."""
    if not is_initialized() or world_size() == 1:
        yield
        return
    try:
        yield
    except BaseException:
        failed_ranks(True)
        raise
    bad = failed_ranks(False)
    if bad:
        raise DiffusekitError(f"{what}: rank(s) {bad} failed (see their error output); this rank's share "
                              "finished. Fix the error and rerun: finished work is kept")


# ---------------------------------------------------------------------------------------------
# sharding and atomic files
# ---------------------------------------------------------------------------------------------


def shard_range(n: int, rank: int, world: int) -> range:
    """The contiguous range of ``n`` items that ``rank`` of ``world`` processes handles.

    Ranges are disjoint, cover ``range(n)`` in rank order and differ in size by at most one
    (earlier ranks take the remainder); a rank may get an empty range when ``n < world``."""
    check_number("n", n, integer=True, low=0)
    check_number("world", world, integer=True, low=1)
    check_number("rank", rank, integer=True, low=0)
    if rank >= world:
        raise ConfigError(f"rank {rank} is not below world size {world}", loc="rank")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _value_sha256(value: Any) -> str | None:
    if value is None:
        return None
    if st.is_state(value):
        return tensors_sha256(st.flatten(value, "cond"))
    return _sha256_text(_canonical(value))


def shard_name(k: int, num_shards: int) -> str:
    """``samples-{k:05d}-of-{num_shards:05d}.safetensors``."""
    return f"samples-{k:05d}-of-{num_shards:05d}.safetensors"


def _read_header(path: Path) -> dict | None:
    """The safetensors JSON header of ``path`` (None if it is not a readable safetensors file)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size <= 0 or size > 100_000_000:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def _shard_meta(path: Path) -> dict | None:
    header = _read_header(path)
    if header is None:
        return None
    meta = header.get("__metadata__") or {}
    return meta if meta.get("format") == SAMPLES_FORMAT else None


# fields that identify a sampling run, in the order a mismatch is reported, with the fix
_RUN_FIELDS = {
    "n": "pass --n {old} (the same n) to resume it",
    "batch_size": "pass --batch-size {old} (the same batch size: a shard is one batch) to resume it",
    "seed": "pass --seed {old} to resume it",
    "config_hash": "use the same run directory and --sampler as that run to resume it",
    "weights_sha256": "use the same weights as that run to resume it",
    "cond_sha256": "use the same condition as that run to resume it",
}
_FIELD_WORDS = {"config_hash": "a pipeline configuration (components, sampler, guidance) with hash",
                "weights_sha256": "weights with sha256", "cond_sha256": "a condition with sha256"}


def _check_same_run(where: str, found: dict, plan: dict, out: Path) -> None:
    for key, fix in _RUN_FIELDS.items():
        old, new = str(found.get(key)), str(plan[key])
        if old != new:
            what = _FIELD_WORDS.get(key, key)
            raise ConfigError(
                f"{out} already holds samples of another run ({where} was drawn with {what} = {old}, this run "
                f"has {new}); {fix.format(old=old)}, or pass a new output directory", loc="out")


@dataclass
class SampleReport:
    """What :func:`sample` did (the same on every rank apart from ``nfe``, the network
    evaluations of this rank's last batch): ``drawn`` / ``skipped`` count shards over all
    ranks, ``seconds`` is this rank's wall time, ``manifest`` is None while incomplete."""

    out: Path
    n: int
    num_shards: int
    drawn: int
    skipped: int
    complete: bool
    world_size: int
    seconds: float
    #: samples drawn by this call over all ranks (the rest came from complete shards)
    samples_drawn: int = 0
    manifest: dict | None = None
    nfe: int | None = None
    warnings: list[str] = field(default_factory=list)


def _run_plan(pipe, n: int, batch_size: int, seed: int, cond, sampler, guidance) -> dict:
    from .api import spec_of
    from .io import state_tensors

    def spec(obj, kind):
        s = spec_of(obj, kind)
        return s if s is not None else {"unregistered": f"{type(obj).__module__}.{type(obj).__qualname__}"}

    config = dict(pipe.config)
    config["sampler"] = spec(sampler, "sampler")
    config["guidance"] = [spec(g, "guidance") for g in guidance] or None
    for kind in ("process", "parameterization", "network", "conditioner"):
        obj = getattr(pipe, kind)
        if config.get(kind) is None and obj is not None:  # not built from the registry: name its class
            config[kind] = {"unregistered": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    plan = {
        "n": n, "batch_size": batch_size, "seed": seed,
        "config_hash": _sha256_text(_canonical(config)),
        "weights_sha256": tensors_sha256(state_tensors(pipe)),
        "cond_sha256": _value_sha256(cond),
    }
    plan["run_id"] = _sha256_text(_canonical({"format_version": SAMPLES_FORMAT_VERSION, **plan}))
    plan["config"] = config
    return plan


def _shard_bounds(k: int, n: int, batch_size: int) -> tuple[int, int]:
    return k * batch_size, min(n, (k + 1) * batch_size)


def _parse_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors.torch import load

    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    return load(data), header.get("__metadata__") or {}


def _verify_shard(path: Path, k: int, plan: dict, expected_sha: str | None) -> str | None:
    """The file's sha256 when ``path`` is a complete shard ``k`` of this run, else None."""
    try:
        data = path.read_bytes()
        tensors, meta = _parse_safetensors(data)
    except Exception:  # unreadable: redraw it
        return None
    sha = hashlib.sha256(data).hexdigest()
    if expected_sha is not None and sha != expected_sha:
        return None
    start, stop = _shard_bounds(k, plan["n"], plan["batch_size"])
    if (meta.get("run_id") != plan["run_id"] or meta.get("start") != str(start) or meta.get("stop") != str(stop)
            or meta.get("data_sha256") != tensors_sha256(tensors)
            or any(t.ndim == 0 or t.shape[0] != stop - start for t in tensors.values())):
        return None
    return sha


def read_manifest(out: str | os.PathLike) -> dict:
    """The manifest of a sample directory written by :func:`sample` (format checked)."""
    path = Path(out) / MANIFEST_FILE
    if not path.exists():
        raise IntegrityError(f"{path} not found: {out} is not a finished sample directory (a run that was "
                             "stopped has shards but no manifest); rerun the same `diffusekit sample ... --out "
                             f"{out}` (or dk.distributed.sample) to finish it")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise IntegrityError(f"{path} is not valid JSON ({exc}); rerun the sampling command to rewrite it") from None
    if not isinstance(doc, dict) or doc.get("format") != SAMPLES_FORMAT:
        raise IntegrityError(f"{path} is not a diffusekit sample manifest (format {doc.get('format')!r}, "
                             f"expected {SAMPLES_FORMAT!r})" if isinstance(doc, dict) else f"{path}: not a manifest")
    if int(doc.get("format_version", 0)) > SAMPLES_FORMAT_VERSION:
        raise IntegrityError(f"{path} has format_version {doc['format_version']}, newer than this diffusekit reads "
                             f"({SAMPLES_FORMAT_VERSION}); upgrade diffusekit")
    return doc


def load_samples(out: str | os.PathLike, verify: bool = True) -> Any:
    """Every sample of a directory written by :func:`sample`, concatenated in index order.

    Returns a Tensor, or a dict state with the nesting recorded in the manifest. With
    ``verify`` (default) each shard's sha256, index range and batch are checked against the
    manifest; a mismatch raises :class:`~diffusekit.errors.IntegrityError` naming the file."""
    out = Path(out)
    doc = read_manifest(out)
    parts: list[dict[str, torch.Tensor]] = []
    expected_start = 0
    for entry in doc["shards"]:
        path = out / entry["file"]
        if not path.exists():
            raise IntegrityError(f"{path} is listed in the manifest but missing; rerun the sampling command "
                                 "with the same arguments to redraw it")
        data = path.read_bytes()
        if verify:
            sha = hashlib.sha256(data).hexdigest()
            if sha != entry["sha256"]:
                raise IntegrityError(f"{path}: sha256 {sha} does not match the manifest ({entry['sha256']}); the "
                                     "file changed after it was written. Rerun the sampling command with the same "
                                     "arguments: it redraws shards whose hash does not match")
        tensors, meta = _parse_safetensors(data)
        start, stop = int(entry["start"]), int(entry["stop"])
        if verify and (start != expected_start or meta.get("start") != str(start) or meta.get("stop") != str(stop)
                       or any(t.shape[0] != stop - start for t in tensors.values())):
            raise IntegrityError(f"{path}: holds samples [{meta.get('start')}, {meta.get('stop')}) but the manifest "
                                 f"expects [{start}, {stop}) after index {expected_start}; rerun the sampling "
                                 "command with the same arguments")
        expected_start = stop
        parts.append(tensors)
    if verify and expected_start != int(doc["n"]):
        raise IntegrityError(f"{out}: the shards hold {expected_start} samples, the manifest says n = {doc['n']}")
    keys = sorted(parts[0])
    flat = {k: torch.cat([p[k] for p in parts], 0) for k in keys}
    shape = doc["state"]["shape"]
    return st.unflatten(flat, shape, prefix=SAMPLES_KEY)


def _shard_bytes(x: Any, k: int, plan: dict, start: int, stop: int) -> bytes:
    from safetensors.torch import save

    tensors = {name: v.detach().cpu().contiguous() for name, v in st.flatten(x, SAMPLES_KEY).items()}
    meta = {"format": SAMPLES_FORMAT, "format_version": str(SAMPLES_FORMAT_VERSION),
            "shard": str(k), "num_shards": str(math.ceil(plan["n"] / plan["batch_size"])),
            "start": str(start), "stop": str(stop),
            "state_shape": _canonical(st.shape_to_json(st.shape_of(x))),
            "data_sha256": tensors_sha256(tensors),
            **{key: str(plan[key]) for key in ("run_id", *_RUN_FIELDS)}}
    return _canonical_safetensors(save(tensors, metadata=meta))


def _canonical_safetensors(data: bytes) -> bytes:
    """The same file with its JSON header in sorted-key order (safetensors writes the metadata
    in hash-map order, which varies between processes), so equal shards are equal bytes."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data buffer to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def _check_output(out: Path, plan: dict, num_shards: int) -> dict | None:
    """Refuse a directory holding another run (same decision on every rank); the old manifest."""
    manifest = None
    if (out / MANIFEST_FILE).exists():
        try:
            manifest = json.loads((out / MANIFEST_FILE).read_text())
        except ValueError:  # unreadable (it is written atomically, so only outside damage): rewritten at the end
            manifest = None
        if isinstance(manifest, dict) and manifest.get("format") == SAMPLES_FORMAT:
            _check_same_run(MANIFEST_FILE, manifest, plan, out)
        else:
            manifest = None
    for path in sorted(out.glob("samples-*-of-*.safetensors")):
        meta = _shard_meta(path)
        if meta is None:
            continue
        if meta.get("run_id") != plan["run_id"]:
            _check_same_run(path.name, meta, plan, out)
    return manifest


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sampling shards", disable=None)


def sample(pipe, n: int, out: str | os.PathLike, batch_size: int = 64, seed: int = 0, cond: Any = None,
           sampler: Any = None, guidance: Any = None, device: Any = None, progress: bool = False,
           stop_after_shards: int | None = None) -> SampleReport:
    """Draw ``n`` samples of ``pipe`` into ``out`` as shards plus ``manifest.json``.

    Run it on every rank (``torchrun``) or in one process; the result is the same bytes. Sample
    ``i`` uses the per-sample generator seeded ``seed + i``; shard ``k`` =
    ``samples-{k:05d}-of-{K:05d}.safetensors`` holds samples ``[k B, min((k + 1) B, n))``
    (B = ``batch_size``, K = ceil(n / B)), drawn as one batch; rank r draws the contiguous
    block ``shard_range(K, r, world_size)``. Each shard is written atomically with its run
    identity in its metadata; the manifest (hashes of every shard) is written last by rank 0.
    Rerunning skips shards that are complete and belong to this run (checked by hash), so a
    killed run resumes, with any number of processes, and ends with the same bytes.

    ``cond``: a condition with one row per sample (row i goes with sample i). ``sampler`` /
    ``guidance`` override the pipeline's for this run. ``device``: where to sample (default:
    the pipeline's). ``stop_after_shards`` is a test hook: each rank stops after drawing that
    many shards, as if killed (no manifest). Returns a :class:`SampleReport`.
    """
    from .pipeline import check_cond

    check_number("n", n, integer=True, low=1)
    check_number("batch_size", batch_size, integer=True, low=1)
    check_number("seed", seed, integer=True, low=0)
    if stop_after_shards is not None:
        check_number("stop_after_shards", stop_after_shards, integer=True, low=0)
    check_cond(cond, n)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; sharded sampling writes a directory of shards plus manifest.json: "
                          "pass a directory path (a single .safetensors / .npy file is written by "
                          "`diffusekit sample` without --batch-size, in one process)", loc="out")
    init()
    world, me = world_size(), rank()
    sampler_obj, guides = pipe.call_components(sampler, guidance)
    plan = _run_plan(pipe, n, batch_size, seed, cond, sampler_obj, guides)
    coupling = batch_coupling(sampler_obj, guides)
    if coupling and is_main():
        warnings.warn("samples depend on the batch partition (" + "; ".join(coupling) + f"): they are exact across "
                      f"world sizes and resumes for batch_size={batch_size}, but change with another batch size",
                      UserWarning, stacklevel=2)
    num_shards = math.ceil(n / batch_size)
    out.mkdir(parents=True, exist_ok=True)
    old_manifest = _check_output(out, plan, num_shards)
    old_sha = {}
    if old_manifest is not None:
        old_sha = {int(e["index"]): e["sha256"] for e in old_manifest.get("shards", [])}

    mine = shard_range(num_shards, me, world)
    table = torch.zeros(num_shards, 34, dtype=torch.int64)  # 32 hash bytes, done, samples drawn
    t0 = time.perf_counter()
    nfe = None
    bar = _progress_bar(len(mine), progress and is_main())
    with propagate_errors("dk.distributed.sample"):
        drawn_here = 0
        for k in mine:
            path = out / shard_name(k, num_shards)
            _remove_stale_temps(path)  # left by a writer that was killed
            sha = _verify_shard(path, k, plan, old_sha.get(k)) if path.exists() else None
            if sha is None:
                if stop_after_shards is not None and drawn_here >= stop_after_shards:
                    continue  # the test hook: behave as if this rank had been killed here
                start, stop = _shard_bounds(k, n, batch_size)
                x = pipe.sample(stop - start, cond=st.index(cond, slice(start, stop)),
                                generator=list(range(seed + start, seed + stop)), sampler=sampler_obj,
                                guidance=guides, device=device)
                nfe = pipe.last_nfe
                data = _shard_bytes(x, k, plan, start, stop)
                atomic_write_bytes(path, data)
                sha = hashlib.sha256(data).hexdigest()
                drawn_here += 1
                table[k, 33] = stop - start
            table[k, :32] = torch.tensor(list(bytes.fromhex(sha)), dtype=torch.int64)
            table[k, 32] = 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    table = all_reduce(table)
    done = table[:, 32]
    complete = bool((done == 1).all())
    drawn = int((table[:, 33] > 0).sum())
    report = SampleReport(out, n, num_shards, drawn, int(done.sum()) - drawn, complete, world,
                          time.perf_counter() - t0, int(table[:, 33].sum()), None, nfe, coupling)
    if not complete:
        return report
    shards = []
    for k in range(num_shards):
        start, stop = _shard_bounds(k, n, batch_size)
        shards.append({"index": k, "file": shard_name(k, num_shards), "start": start, "stop": stop,
                       "sha256": bytes(table[k, :32].tolist()).hex()})
    if old_manifest is not None and drawn == 0 and old_manifest.get("shards") == shards:
        report.manifest = old_manifest  # nothing changed: keep the manifest as it was
        barrier()
        return report
    manifest = _manifest(out, plan, shards, coupling, world, report)
    if is_main():
        atomic_write_bytes(out / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    barrier()
    report.manifest = manifest
    return report


def _manifest(out: Path, plan: dict, shards: list, coupling: list, world: int, report: SampleReport) -> dict:
    from .io import versions

    meta = _shard_meta(out / shards[0]["file"]) or {}
    header = _read_header(out / shards[0]["file"]) or {}
    leaves = {k: {"dtype": v["dtype"], "shape": v["shape"][1:]} for k, v in sorted(header.items())
              if k != "__metadata__"}
    return {
        "format": SAMPLES_FORMAT,
        "format_version": SAMPLES_FORMAT_VERSION,
        "n": plan["n"],
        "batch_size": plan["batch_size"],
        "seed": plan["seed"],
        "seeds": SEED_RULE,
        "num_shards": len(shards),
        "shard_rule": SHARD_RULE,
        "run_id": plan["run_id"],
        "config_hash": plan["config_hash"],
        "weights_sha256": plan["weights_sha256"],
        "cond_sha256": plan["cond_sha256"],
        "pipeline": plan["config"],
        "sampler": plan["config"]["sampler"],
        "guidance": plan["config"]["guidance"],
        "batch_invariant": not coupling,
        "batch_coupling": coupling,
        "state": {"shape": json.loads(meta.get("state_shape", "null")), "leaves": leaves},
        "nfe_per_batch": report.nfe,
        "world_size": world,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "shards": shards,
    }


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def evaluate(metric: Any, samples: Any, reference: Any = None, *, bins: Sequence[float] | None = None,
             **params: Any) -> dict[str, Any]:
    """A metric over a test set with every rank scoring its own share.

    ``metric``: a registered metric name or ``{"name": ...}`` spec (``params`` are its
    parameters), a :class:`~diffusekit.metrics.Metric` or a per-item callable
    ``fn(estimate, reference) -> float``. ``samples`` / ``reference``: Tensors (rows are
    items) or sequences of items, the same on every rank (a lazily loading sequence reads
    only the rank's items). Per-item metrics score the pairs of ``shard_range(N, rank,
    world)`` and all-reduce sums, extrema and the optional histogram (``bins = (lo, hi,
    count)``); MMD all-reduces its kernel sums over row blocks. Returns the same dict on every
    rank (``value`` is the headline number)."""
    from .metrics import as_metric

    init()
    m = as_metric(metric, bins=bins, **params)
    with propagate_errors(f"evaluate {m.name}"):
        parts = m.partial(samples, reference, rank(), world_size())
    return m.finalize(reduce_sums(parts, m.reduce))


def reduce_sums(parts: dict[str, torch.Tensor], ops: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """All-reduce a dict of partial results, ``ops[key]`` (``sum`` by default, ``min``, ``max``),
    one collective per operation (keys in sorted order, so every rank packs them alike)."""
    ops = ops or {}
    out: dict[str, torch.Tensor] = {}
    for op in _OPS:
        keys = [k for k in sorted(parts) if ops.get(k, "sum") == op]
        if not keys:
            continue
        flat = [parts[k].detach().to(torch.float64).reshape(-1) for k in keys]
        reduced = all_reduce(torch.cat(flat), op)
        pos = 0
        for k, f in zip(keys, flat):
            out[k] = reduced[pos:pos + f.numel()].reshape(parts[k].shape)
            pos += f.numel()
    return out


__all__ = ["init", "shutdown", "is_initialized", "rank", "world_size", "local_rank", "is_main", "device", "barrier",
           "all_reduce", "failed_ranks", "propagate_errors", "shard_range", "atomic_write", "atomic_write_bytes",
           "tensors_sha256", "shard_name", "sample", "SampleReport", "read_manifest", "load_samples", "evaluate",
           "reduce_sums", "SAMPLES_FORMAT", "SAMPLES_FORMAT_VERSION", "MANIFEST_FILE", "SAMPLES_KEY"]
