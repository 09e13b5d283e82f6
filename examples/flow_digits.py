"""Flow matching vs the score-SDE VP model on scikit-learn's 8x8 digits, same network and budget.

Both models are the registered ``mlp`` on the flattened 64-d images in [-1, 1] (hidden 256,
depth 3), trained with identical optimiser, steps, batch size, EMA and seed; only the process
and the parameterization differ:

* flow matching: ``rectified-flow`` + ``velocity`` (plain flow-matching loss, uniform t);
* score SDE: ``vp`` (beta 0.1 -> 20) + ``eps`` (the DDPM loss).

Samples at 5 / 10 / 20 NFE with the flow samplers (they run on both processes: on VP the
velocity comes from the eps prediction) and with the solvers plugin's DPM-Solver++ / DEIS; the
second-order flow samplers take NFE // 2 steps (the NFE actually used is printed).

Metric: the Frechet distance between Gaussian fits of the penultimate-layer features of a small
digits classifier trained on the training split, exactly as in ``examples/pfgmpp_digits.py``
(its functions are imported from there). Not Inception FID; compare within this script only.
The floor is the distance between the training and the held-out test images.

Run:  python examples/flow_digits.py [--steps 3000] [--json out.json] [--png docs/img/flow_digits.png]
(single thread; a few minutes per model on a shared CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

import diffusekit as dk

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pfgmpp_digits import frechet_distance, train_classifier  # noqa: E402

NFES = (5, 10, 20)
MODELS = {
    "flow matching (rectified-flow + velocity)": ("rectified-flow", "velocity"),
    "score SDE (vp + eps)": ("vp", "eps"),
}
SAMPLERS = {  # label -> (registry name, steps for an NFE budget, extra params)
    "flow-euler": ("flow-euler", lambda n: n, {}),
    "flow-midpoint": ("flow-midpoint", lambda n: max(1, n // 2), {}),
    "dpm-solver++ (3M, logsnr)": ("dpm-solver++", lambda n: n, {}),
    "deis (tAB3, logsnr)": ("deis", lambda n: n, {}),
}


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000, help="training steps per model (same for both)")
    ap.add_argument("--n", type=int, default=1000, help="samples per Frechet distance")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="")
    ap.add_argument("--png", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_all = time.time()
    print(f"load average at start: {loadavg()}", flush=True)
    train = dk.create("dataset", "digits", labels=True)
    test = dk.create("dataset", "digits", split="test", labels=True)
    flat_train, flat_test = train.x.reshape(-1, 64), test.x.reshape(-1, 64)
    clf, acc = train_classifier(flat_train, train.cond, flat_test, test.cond)
    with torch.no_grad():
        f_test, f_train = clf.features(flat_test), clf.features(flat_train)
    floor = frechet_distance(f_train, f_test)
    print(f"classifier test accuracy {acc:.3f}; Frechet floor (train vs test) {floor:.3f}", flush=True)

    results, timing, grids = {}, {}, {}
    for label, (proc, par) in MODELS.items():
        torch.manual_seed(args.seed)
        pipe = dk.Pipeline(process=proc, parameterization=par, sample_shape=(64,),
                           network={"name": "mlp", "dim": 64, "hidden": 256, "depth": 3, "time_dim": 64})
        t0 = time.time()
        res = dk.train(pipe, flat_train, steps=args.steps, batch_size=128, lr=1e-3, ema=0.999, warmup=100,
                       seed=args.seed)
        timing[label] = time.time() - t0
        print(f"{label}: trained {args.steps} steps in {timing[label]:.0f}s (final loss {res.final_loss:.4f}); "
              f"load {loadavg()}", flush=True)
        gens = list(range(10_000, 10_000 + args.n))
        for sname, (name, steps, extra) in SAMPLERS.items():
            for nfe in NFES:
                x = pipe.sample(args.n, generator=gens, sampler={"name": name, "steps": steps(nfe), **extra})
                x = x.clamp(-1, 1)
                with torch.no_grad():
                    fd = frechet_distance(clf.features(x), f_test)
                results.setdefault(label, {}).setdefault(sname, {})[nfe] = (fd, pipe.last_nfe)
                if sname == "flow-midpoint" and nfe == 20:
                    grids[label] = x[:32].reshape(-1, 8, 8)
            print(f"  {sname}: " + ", ".join(f"NFE {v[1]} -> {v[0]:.3f}" for v in results[label][sname].values()),
                  flush=True)

    print(f"\nFrechet distance in the feature space of a {acc:.1%}-accurate digits classifier (NOT Inception "
          f"FID); {args.n} samples vs {len(flat_test)} test images; floor (train vs test) {floor:.3f}; "
          f"{args.steps} training steps of batch 128 per model\n")
    print("| model | sampler | NFE 5 | NFE 10 | NFE 20 |")
    print("|---|---|---:|---:|---:|")
    for label, per in results.items():
        for sname, vals in per.items():
            cells = [f"{fd:.3f}" + ("" if used == nfe else f" ({used})") for nfe, (fd, used) in vals.items()]
            print(f"| {label} | {sname} | " + " | ".join(cells) + " |")
    total = time.time() - t_all
    print("\ntraining wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timing.items()) +
          f"; total {total:.0f}s; load average at end: {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"classifier_acc": acc, "floor": floor, "results": results, "timing": timing,
                       "total_s": total, "load_end": loadavg(), "args": vars(args)}, f, indent=1)
    if args.png:
        from diffusekit.plotting import save_digit_panels

        save_digit_panels({f"{name.split(' (')[0]}, flow-midpoint 20 NFE": imgs for name, imgs in grids.items()},
                          args.png, fontsize=8)
        print(f"sample grid written to {args.png}")


if __name__ == "__main__":
    main()
