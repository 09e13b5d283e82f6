"""``diffusekit enhance NOISY.wav|DIR --run RUN_DIR --out OUT`` (registered via register_commands).

Under ``torchrun`` the sorted input files are split across ranks in contiguous blocks
(``dk.distributed.shard_range``); each rank writes its own outputs (named by input) atomically.
Chunk k of every file uses the per-sample seed ``seed + k``, so outputs do not depend on the
number of processes. ``--resume`` skips inputs whose output already exists (an output is only
ever complete, because it is renamed into place after it was written)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure_enhance(p: argparse.ArgumentParser) -> None:
    p.add_argument("noisy", help="a noisy WAV file or a directory of WAV files (16 kHz)")
    p.add_argument("--run", required=True, help="run directory written by `diffusekit train` / Pipeline.save")
    p.add_argument("--out", required=True, help="output WAV file (for one input) or directory")
    p.add_argument("--sampler", default=None, help="sampler name or JSON spec overriding the run's sampler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-seconds", type=float, default=4.0, help="stream long files in chunks of this length")
    p.add_argument("--overlap-seconds", type=float, default=0.5, help="cross-faded overlap between chunks")
    p.add_argument("--resume", action="store_true", help="skip inputs whose output file already exists")


def run_enhance(args) -> int:
    import soundfile as sf
    import torch

    from .enhance import enhance_waveform, load_run

    src = Path(args.noisy)
    if not src.exists():
        print(f"error: {src} does not exist; pass a WAV file or a directory of WAV files", file=sys.stderr)
        return 2
    files = sorted(src.glob("*.wav")) if src.is_dir() else [src]
    if not files:
        print(f"error: no .wav files in {src}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if src.is_dir() or out.suffix.lower() != ".wav":
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / f.name for f in files]
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        targets = [out]
    sampler = None
    if args.sampler:
        sampler = json.loads(args.sampler) if args.sampler.lstrip().startswith("{") else args.sampler
    with torch.no_grad():  # never leave autograd disabled for the caller (in-process CLI use)
        return _enhance_files(args, files, targets, sampler)


def _enhance_files(args, files, targets, sampler) -> int:
    import soundfile as sf
    import torch

    from diffusekit import distributed as dist

    from .enhance import enhance_waveform, load_run

    dist.init()
    world, rank = dist.world_size(), dist.rank()
    mine = dist.shard_range(len(files), rank, world)
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    done = skipped = 0
    with dist.propagate_errors("enhance"):
        pipe, predictive = load_run(args.run)
        for i in mine:
            f, target = files[i], targets[i]
            if args.resume and target.exists():
                skipped += 1
                continue
            wav, sr = sf.read(str(f), dtype="float32", always_2d=True)
            if sr != 16_000:
                import torchaudio.functional as AF

                wav_t = AF.resample(torch.from_numpy(wav.T.copy()), sr, 16_000)
            else:
                wav_t = torch.from_numpy(wav.T.copy())
            mono = wav_t.mean(0)
            enhanced = enhance_waveform(pipe, mono, seed=args.seed, predictive=predictive, sampler=sampler,
                                        chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds)
            data = enhanced.numpy()
            dist.atomic_write(target, lambda tmp: sf.write(str(tmp), data, 16_000))
            done += 1
            print(f"{tag}{f} -> {target} ({mono.shape[-1] / 16_000:.2f} s, {pipe.last_nfe} NFE per chunk)")
    counts = dist.all_reduce(torch.tensor([done, skipped], dtype=torch.int64))
    if dist.is_main() and (world > 1 or skipped):
        print(f"enhanced {int(counts[0])} file(s), skipped {int(counts[1])} existing, on {world} process(es)")
    return 0
