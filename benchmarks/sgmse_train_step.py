"""Profile one SGMSE training step on this machine: steps / s and crops / s by configuration.

    python benchmarks/sgmse_train_step.py                 # the default sweep (about 3 minutes)
    python benchmarks/sgmse_train_step.py --quick         # threads x batch only

Every row trains the recipe network (``ncsnpp`` custom nf 8, ch_mult (1, 2, 4, 8), 0.61 M
parameters) with the SGMSE+ score loss on random complex spectrograms of the recipe's shape
(256 bins x ``frames``), AdamW, timing ``--steps`` steps after two warm-up steps. Variants:
threads, batch size, crop length, channels-last memory format, bf16 autocast on CPU, and the
data pipeline (building the crops from the espeak-ng corpus vs. loading them from the on-disk
cache). Prints a Markdown table; the load average is printed next to it (timings on a busy
machine are not comparable).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

import diffusekit as dk

NET = {"name": "ncsnpp", "preset": "custom", "nf": 8, "ch_mult": [1, 2, 4, 8]}


def time_steps(threads: int, batch: int, frames: int, channels_last: bool = False, bf16: bool = False,
               steps: int = 8) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    pipe = dk.Pipeline.from_config({"process": {"name": "ouve"}, "parameterization": "sgmse-score",
                                    "network": NET, "sampler": {"name": "sgmse-pc", "steps": 30}})
    if channels_last:
        pipe.network.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(pipe.parameters(), lr=1e-4)
    x = torch.randn(batch, 256, frames, dtype=torch.complex64)
    y = x + 0.5 * torch.randn_like(x)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        with ctx:
            loss = pipe.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
          f"cores {os.cpu_count()}")
    rows = [(1, 4, 32, False, False), (2, 4, 32, False, False), (1, 8, 32, False, False),
            (2, 8, 32, False, False), (1, 4, 64, False, False), (1, 16, 32, False, False)]
    if not args.quick:
        rows += [(1, 4, 32, True, False), (1, 4, 32, False, True)]
    print("| threads | batch | frames | channels-last | bf16 autocast | s / step | crops / s | bins / s (M) |")
    print("|---|---|---|---|---|---|---|---|")
    for th, b, f, cl, bf in rows:
        s = time_steps(th, b, f, cl, bf, args.steps)
        print(f"| {th} | {b} | {f} | {'yes' if cl else 'no'} | {'yes' if bf else 'no'} | {s:.3f} | "
              f"{b / s:.1f} | {b * f * 256 / s / 1e6:.2f} |", flush=True)
    if not args.quick:
        from diffusekit_sgmse.data import espeak_available, spectrogram_dataset

        if espeak_available():
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            spectrogram_dataset("train", n=40, frames=32, crops_per_pair=3, seed=12345)
            print(f"\ndata: building 40 pairs x 3 crops from the corpus: {time.perf_counter() - t0:.2f} s "
                  "(espeak-ng waveforms cached on disk after the first call)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
