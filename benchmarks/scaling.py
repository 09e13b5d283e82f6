"""Scale-out benchmark: samples per second of ``dk.distributed.sample`` with 1 and 2 processes
(``torchrun --standalone``, gloo, CPU, one thread per process), and a check that both runs wrote
the same bytes.

Workload: a VP pipeline with a seeded, untrained MLP (dim 64, hidden 512, depth 3), DDIM with
``--steps`` steps, ``--samples`` samples in shards of ``--batch-size``. Each worker times
``dk.distributed.sample`` between two barriers (process start-up and plugin loading excluded);
the end-to-end column is the whole ``torchrun`` command.

    python benchmarks/scaling.py [--samples 2048] [--batch-size 128] [--steps 50] [--procs 1 2]

Prints a markdown table and the machine's load average (``os.getloadavg``) before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_pipe(steps: int):
    import torch

    import diffusekit as dk

    torch.manual_seed(0)
    return dk.Pipeline.from_config({"process": "vp", "parameterization": "eps",
                                    "network": {"name": "mlp", "dim": 64, "hidden": 512, "depth": 3},
                                    "sampler": {"name": "ddim", "steps": steps}})


def worker(args) -> None:
    import torch

    import diffusekit as dk

    torch.set_num_threads(1)
    dist = dk.distributed
    dist.init()
    pipe = build_pipe(args.steps)
    dist.barrier()
    t0 = time.perf_counter()
    report = dist.sample(pipe, args.samples, args.out, batch_size=args.batch_size, seed=0)
    dist.barrier()
    seconds = time.perf_counter() - t0
    if dist.is_main():
        Path(args.out, "timing.json").write_text(json.dumps({"world": dist.world_size(), "seconds": seconds,
                                                             "drawn": report.drawn}))


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("samples-*.safetensors"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # (torchrun reads abbreviations of its own options after the script too: "--n" would be
    # ambiguous with --nnodes, so the option is spelled --samples)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="dk-scaling-"))
    rows = []
    try:
        for w in args.procs:
            out = root / f"world{w}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(w),
                   __file__, "--worker", "--out", str(out), "--samples", str(args.samples), "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            total = time.perf_counter() - t0
            timing = json.loads((out / "timing.json").read_text())
            rows.append((w, timing["seconds"], total, shard_bytes(out)))
        load_after = os.getloadavg()
        base = rows[0][1]
        print(f"{args.samples} samples, batch {args.batch_size}, DDIM {args.steps} steps, MLP 64-512x3, "
              f"{os.cpu_count()} CPUs, 1 thread per process\n")
        print("| processes | sampling (s) | samples / s | speed-up | end-to-end incl. start-up (s) | same bytes as 1 process |")
        print("|---|---|---|---|---|---|")
        for w, seconds, total, files in rows:
            same = "yes" if files == rows[0][3] else "NO"
            print(f"| {w} | {seconds:.2f} | {args.samples / seconds:.0f} | {base / seconds:.2f}x | {total:.1f} | {same} |")
        print(f"\nload average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
              f"after: {', '.join(f'{v:.2f}' for v in load_after)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
