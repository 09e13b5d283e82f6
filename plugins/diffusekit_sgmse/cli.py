"""``diffusekit enhance NOISY.wav|DIR --run RUN_DIR --out OUT`` (registered via register_commands).

Under ``torchrun`` the sorted input files are split across ranks in contiguous blocks
(``dk.distributed.shard_range``); each rank writes its own outputs (named by input) atomically.
Chunk k of every file uses the per-sample seed ``seed + k``, so outputs do not depend on the
number of processes. ``--resume`` skips inputs whose output already exists (an output is only
ever complete, because it is renamed into place after it was written)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


AUDIO_SUFFIXES = (".wav",)


def configure_enhance(p: argparse.ArgumentParser) -> None:
    p.add_argument("noisy", help="a noisy WAV file or a directory of WAV files (16 kHz; .wav / .WAV)")
    p.add_argument("--run", required=True, help="run directory written by `diffusekit train` / Pipeline.save")
    p.add_argument("--out", required=True, help="output WAV file (for one input) or directory; never the input "
                   "itself (the noisy originals are kept)")
    p.add_argument("--sampler", default=None, help="sampler name or JSON spec overriding the run's sampler")
    p.add_argument("--seed", type=int, default=0, help="chunk k of each file uses the generator seeded seed + k")
    p.add_argument("--chunk-seconds", type=float, default=4.0,
                   help="stream long files in chunks of this length (at least 0.25 s; default 4)")
    p.add_argument("--overlap-seconds", type=float, default=0.5,
                   help="cross-faded overlap between chunks (at most half a chunk; default 0.5)")
    p.add_argument("--recursive", action="store_true", help="also enhance WAV files in subdirectories (the "
                   "output keeps their relative paths)")
    p.add_argument("--resume", action="store_true", help="skip inputs whose output file already exists")


def _inputs(src: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in src.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _same_or_inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def plan_outputs(src: Path, out: Path, recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """Input files and their output paths; refuses, before any work, what would overwrite the
    noisy inputs or cannot be written."""
    from diffusekit.errors import ConfigError
    from diffusekit.files import check_output_dir, check_output_file

    if not src.exists():
        raise ConfigError(f"{src} does not exist; pass a WAV file or a directory of WAV files", loc="noisy")
    if src.is_dir():
        files = _inputs(src, recursive)
        if not files:
            raise ConfigError(f"no .wav files in {src}" + ("" if recursive else " (--recursive searches "
                                                            "subdirectories)"), loc="noisy")
        if out.exists() and not out.is_dir() or out.suffix.lower() in AUDIO_SUFFIXES:
            raise ConfigError(f"{src} is a directory, so --out must be a directory, got {str(out)!r}", loc="--out")
        if _same_or_inside(out, src) and (recursive or out.resolve() == src.resolve()):
            raise ConfigError(f"--out {str(out)!r} is the input directory (or inside it): the enhanced files would "
                              "overwrite or mix with the noisy originals; choose another directory", loc="--out")
        check_output_dir(out, loc="--out")
        return files, [out / f.relative_to(src) for f in files]
    if out.suffix.lower() in AUDIO_SUFFIXES:
        if out.exists() and out.resolve() == src.resolve():
            raise ConfigError(f"--out {str(out)!r} is the input file; the noisy original would be overwritten; "
                              "choose another file name", loc="--out")
        check_output_file(out, loc="--out")
        return [src], [out]
    check_output_dir(out, loc="--out")
    target = out / src.name
    if target.resolve() == src.resolve():
        raise ConfigError(f"--out {str(out)!r} is the input's directory: {src.name} would be overwritten; choose "
                          "another directory", loc="--out")
    return [src], [target]


def run_enhance(args) -> int:
    import torch

    from diffusekit.cli import parse_spec

    from .enhance import check_chunking

    check_chunking(args.chunk_seconds, args.overlap_seconds, "--chunk-seconds", "--overlap-seconds")  # before any work
    files, targets = plan_outputs(Path(args.noisy), Path(args.out), args.recursive)
    sampler = parse_spec(args.sampler, loc="--sampler")
    with torch.no_grad():  # never leave autograd disabled for the caller (in-process CLI use)
        return _enhance_files(args, files, targets, sampler)


def _read_wav(path: Path):
    """Mono float32 16 kHz waveform; errors name the file."""
    import soundfile as sf
    import torch

    from diffusekit.errors import ConfigError

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        raise ConfigError(f"{path} is not a readable audio file ({exc})", loc="noisy") from None
    if wav.shape[0] == 0:
        raise ConfigError(f"{path} is empty (0 samples)", loc="noisy")
    wav_t = torch.from_numpy(wav.T.copy())
    if sr != 16_000:
        import torchaudio.functional as AF

        wav_t = AF.resample(wav_t, sr, 16_000)
    return wav_t.mean(0)


def _enhance_files(args, files, targets, sampler) -> int:
    import soundfile as sf
    import torch

    from diffusekit import distributed as dist
    from diffusekit.errors import DiffusekitError

    from .enhance import enhance_waveform, load_run

    dist.init()
    world, rank = dist.world_size(), dist.rank()
    mine = dist.shard_range(len(files), rank, world)
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    done = skipped = 0
    failed: list[str] = []
    with dist.propagate_errors("enhance"):
        pipe, predictive = load_run(args.run)
        for i in mine:
            f, target = files[i], targets[i]
            if args.resume and target.exists():
                skipped += 1
                continue
            try:  # one bad file is reported and skipped; the others are still enhanced
                mono = _read_wav(f)
                enhanced = enhance_waveform(pipe, mono, seed=args.seed, predictive=predictive, sampler=sampler,
                                            chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds)
            except DiffusekitError as exc:
                failed.append(f"{f}: {exc}")
                print(f"{tag}skipped {f}: {exc}", file=sys.stderr)
                continue
            data = enhanced.numpy()
            target.parent.mkdir(parents=True, exist_ok=True)
            dist.atomic_write(target, lambda tmp: sf.write(str(tmp), data, 16_000))
            done += 1
            print(f"{tag}{f} -> {target} ({mono.shape[-1] / 16_000:.2f} s, {pipe.last_nfe} NFE per chunk)")
    counts = dist.all_reduce(torch.tensor([done, skipped, len(failed)], dtype=torch.int64))
    n_done, n_skipped, n_failed = (int(c) for c in counts)
    if dist.is_main() and (world > 1 or n_skipped or n_failed):
        print(f"enhanced {n_done} file(s), skipped {n_skipped} existing, {n_failed} failed, on {world} process(es)")
    if n_failed:
        if dist.is_main():
            print(f"error: {n_failed} file(s) could not be enhanced" + (":\n  " + "\n  ".join(failed) if world == 1
                                                                        else " (see the messages above)"),
                  file=sys.stderr)
        return 1
    return 0
