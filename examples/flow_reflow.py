"""Reflow on a 2-D Gaussian mixture (Liu et al. 2022): 1-rectified flow -> 2-rectified flow.

1. Train a rectified flow (velocity MLP, independent coupling) on the 8-Gaussian ring
   (std 0.1, radius 1.5; the exact mixture of diffusekit.testing.GaussianMixture.ring).
2. Draw ``--pairs`` (noise, sample) pairs with it (flow-midpoint, 50 steps = 100 NFE; every
   pair seeded per sample), retrain from its weights on those pairs (``coupling="paired"``).
3. Report the MMD^2 to fresh data of one-step (and 2-, 4-step) Euler samples and the
   straightness S = E int |(x1 - x0) - u(x_t, t)|^2 dt along each model's own trajectories,
   before and after; optionally (``--ot``) the same for a flow trained with minibatch-OT coupling.
4. ``--png``: trajectories before / after reflow.

Run:  python examples/flow_reflow.py [--steps 4000] [--png docs/img/flow_reflow.png] [--json out.json]
(single thread; a few minutes per model on a shared CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture, mmd, mmd_noise_floor
from diffusekit_flow import reflow_pairs, reflow_pipeline, straightness


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def make_pipe(coupling: str = "independent"):
    return dk.Pipeline(process="rectified-flow",
                       parameterization={"name": "velocity", "coupling": coupling},
                       network={"name": "mlp", "dim": 2, "hidden": 256, "depth": 3,
                                "input_features": 16, "input_scale": 4.0},
                       sampler={"name": "flow-midpoint", "steps": 50}, sample_shape=(2,))


def evaluate(pipe, ref, n, seed=1000):
    gens = list(range(seed, seed + n))
    row = {}
    for steps in (1, 2, 4):
        x = pipe.sample(n, generator=gens, sampler={"name": "flow-euler", "steps": steps, "shift": 1.0})
        row[f"euler{steps}"] = mmd(x, ref)
    x = pipe.sample(n, generator=gens)
    row["midpoint50"] = mmd(x, ref)
    row.update({k: v for k, v in straightness(pipe, n=2000, steps=100, seed=seed).items()
                if k in ("straightness", "per_dim")})
    return row


def trajectories(pipe, n=160, steps=50, seed=5000):
    z = pipe.process.prior(n, (2,), generator=list(range(seed, seed + n)))
    res = pipe.sample(n, x_init=z, sampler={"name": "flow-euler", "steps": steps, "shift": 1.0},
                      return_trajectory=True)
    return torch.stack([z] + [s for s in res.trajectory])  # (steps + 1, n, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4000, help="training steps per model")
    ap.add_argument("--reflow-steps", type=int, default=0, help="training steps of the 2-rectified flow (0: --steps)")
    ap.add_argument("--pairs", type=int, default=20_000, help="reflow pairs")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--n", type=int, default=2000, help="samples per MMD estimate")
    ap.add_argument("--ot", action="store_true", help="also train a minibatch-OT flow")
    ap.add_argument("--png", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default="", help="save the trained pipelines under this folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_all = time.time()
    print(f"load average at start: {loadavg()}", flush=True)
    gm = GaussianMixture.ring(8, 1.5, 0.1)
    data = gm.sample(50_000, torch.Generator().manual_seed(args.seed))
    ref = gm.sample(args.n, torch.Generator().manual_seed(777))
    floor = mmd_noise_floor(lambda n, seed: gm.sample(n, torch.Generator().manual_seed(seed)), args.n)
    train_kw = dict(batch_size=args.batch, lr=2e-3, warmup=100, ema=0.999, seed=args.seed)
    rows, timing = {}, {}

    torch.manual_seed(args.seed)
    rf1 = make_pipe()
    t0 = time.time()
    dk.train(rf1, data, steps=args.steps, **train_kw)
    timing["train 1-rectified"] = time.time() - t0
    rows["1-rectified"] = evaluate(rf1, ref, args.n)
    print(f"1-rectified: {rows['1-rectified']} train {timing['train 1-rectified']:.0f}s load {loadavg()}", flush=True)

    t0 = time.time()
    pairs = reflow_pairs(rf1, args.pairs, seed=10_000, batch_size=2000,
                         sampler={"name": "flow-midpoint", "steps": 50})
    timing["reflow pairs"] = time.time() - t0
    rf2 = reflow_pipeline(rf1)
    t0 = time.time()
    dk.train(rf2, pairs, steps=args.reflow_steps or args.steps, **train_kw)
    timing["train 2-rectified"] = time.time() - t0
    rows["2-rectified"] = evaluate(rf2, ref, args.n)
    print(f"2-rectified: {rows['2-rectified']} pairs {timing['reflow pairs']:.0f}s train "
          f"{timing['train 2-rectified']:.0f}s load {loadavg()}", flush=True)

    if args.ot:
        torch.manual_seed(args.seed)
        ot = make_pipe("ot")
        t0 = time.time()
        dk.train(ot, data, steps=args.steps, **train_kw)
        timing["train OT-CFM"] = time.time() - t0
        rows["minibatch OT (1-rectified)"] = evaluate(ot, ref, args.n)
        print(f"OT: {rows['minibatch OT (1-rectified)']} train {timing['train OT-CFM']:.0f}s load {loadavg()}",
              flush=True)

    if args.save:
        rf1.save(os.path.join(args.save, "rf1"))
        rf2.save(os.path.join(args.save, "rf2"))
    ratio = rows["1-rectified"]["euler1"] / max(rows["2-rectified"]["euler1"], 1e-12)
    print(f"\nMMD^2 to fresh data (n = {args.n}; data-vs-data floor {floor:.1e}); straightness S along each "
          f"model's own trajectories (100 Euler steps, 2000 trajectories)\n")
    print("| model | Euler 1 step | Euler 2 | Euler 4 | midpoint 50 (100 NFE) | straightness S | S / dim |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['euler1']:.2e} | {r['euler2']:.2e} | {r['euler4']:.2e} | {r['midpoint50']:.2e} | "
              f"{r['straightness']:.2e} | {r['per_dim']:.2e} |")
    print(f"\none-step Euler MMD ratio 1-rectified / 2-rectified: {ratio:.1f}x")
    total = time.time() - t_all
    print("wall times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timing.items()) + f"; total {total:.0f}s; "
          f"load average at end: {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "floor": floor, "ratio": ratio, "timing": timing, "total_s": total,
                       "load_end": loadavg(), "args": vars(args)}, f, indent=1)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), dpi=100)
        for ax, (name, pipe) in zip(axes, (("1-rectified flow", rf1), ("2-rectified flow (reflow)", rf2))):
            tr = trajectories(pipe)
            for k in range(tr.shape[1]):
                ax.plot(tr[:, k, 0], tr[:, k, 1], color="tab:blue", alpha=0.45, lw=0.8)
            ax.scatter(tr[0, :, 0], tr[0, :, 1], s=3, color="black", label="noise x_1", zorder=3)
            ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=3, color="tab:red", label="sample x_0", zorder=3)
            one = pipe.sample(160, generator=list(range(5000, 5160)), sampler={"name": "flow-euler", "steps": 1,
                                                                                 "shift": 1.0})
            ax.scatter(one[:, 0], one[:, 1], s=3, color="tab:green", label="one Euler step", zorder=2)
            r = rows["1-rectified" if pipe is rf1 else "2-rectified"]
            ax.set_title(f"{name}\nstraightness S = {r['straightness']:.2g}, one-step MMD^2 {r['euler1']:.1e}",
                         fontsize=9)
            ax.set_xlim(-3.2, 3.2)
            ax.set_ylim(-3.2, 3.2)
            ax.set_aspect("equal")
            ax.legend(fontsize=7, loc="lower right", markerscale=3)
        fig.tight_layout()
        fig.savefig(args.png)
        print(f"trajectories written to {args.png}")


if __name__ == "__main__":
    main()
