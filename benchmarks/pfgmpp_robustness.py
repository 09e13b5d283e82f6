"""PFGM++ robustness study on closed-form data: does a smaller augmented dimension D degrade
less than D = inf (EDM) when the denoiser is wrong? (Xu et al. 2023, qualitatively.)

Data: K = 16 weighted points in R^64 (coordinates N(0, 0.5^2)). For every D the *exact*
denoiser is known in closed form (``diffusekit_pfgmpp.oracle``), so every error below is
controlled. Sampling: the registered EDM ``heun`` sampler, Karras grid, 18 steps (35 NFE),
from the exact PFGM++ prior of each D. Errors:

* ``state noise a``: x <- x + a sigma_{i+1} xi after every step but the last (the paper's noise
  injection into intermediate states; xi ~ N(0, I)).
* ``sigma bias b``: the denoiser is evaluated at sigma (1 + b) instead of sigma (a network with
  a mis-calibrated noise-level input).
* ``output bias c``: D + c sigma sqrt(N) m, m a fixed unit vector (a systematic drift error).
* ``output noise a``: D + a sigma xi (unbiased noise on the prediction).
* ``steps n``: the exact denoiser with only n Heun steps (step-size error).
* ``weak MLP``: instead of the oracle, a small MLP (EDM preconditioning) trained with the same
  budget for every D on draws from the data (a weaker network), with and without state noise.

Metric: total-variation distance between the mode frequencies of the samples (nearest data
point) and the true weights (0 = perfect; the Monte-Carlo floor with n samples is ~0.02 at
n = 4000); for the trained MLP also the mean distance to the nearest point / sqrt(N).

Run:  python benchmarks/pfgmpp_robustness.py [--quick] [--plot docs/img/pfgmpp_robustness.png]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

import diffusekit as dk
from diffusekit_pfgmpp.oracle import discrete_denoiser

N_DIM, N_POINTS = 64, 16
D_VALUES = (4.0, 16.0, 64.0, 256.0, 1024.0, math.inf)


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(N_POINTS, N_DIM, generator=g, dtype=torch.float64) * 0.5
    w = torch.rand(N_POINTS, generator=g, dtype=torch.float64) + 0.5
    return pts, w / w.sum()


def process_for(D: float):
    return dk.create("process", "edm") if math.isinf(D) else dk.create("process", "pfgmpp", D=D)


class ErroneousOracle(torch.nn.Module):
    """Exact denoiser with a controlled error (called as network(x, sigma) -> x0)."""

    def __init__(self, pts, w, D: float, kind: str = "none", size: float = 0.0, seed: int = 1):
        super().__init__()
        self.pts, self.w, self.D, self.kind, self.size = pts, w, D, kind, size
        self.gen = torch.Generator().manual_seed(seed)
        m = torch.randn(pts.shape[1], generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        self.direction = m / m.norm()

    def forward(self, x, sigma, cond=None):
        s = sigma.to(torch.float64)
        if self.kind == "sigma bias":
            s = s * (1 + self.size)
        d = discrete_denoiser(x, s, self.pts, self.w, self.D)
        if self.kind == "output bias":
            d = d + self.size * s[:, None] * math.sqrt(x.shape[1]) * self.direction
        elif self.kind == "output noise":
            d = d + self.size * s[:, None] * torch.randn(x.shape, generator=self.gen, dtype=torch.float64)
        return d.to(x.dtype)


def tv_to_weights(x: torch.Tensor, pts: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    dist, idx = torch.cdist(x.double(), pts).min(1)
    freq = torch.bincount(idx, minlength=len(w)).double() / len(x)
    return 0.5 * float((freq - w).abs().sum()), float(dist.mean()) / math.sqrt(pts.shape[1])


def sample(network, D: float, n: int, steps: int = 18, state_noise: float = 0.0, precondition: bool = False,
           seed: int = 3) -> torch.Tensor:
    pipe = dk.Pipeline(process=process_for(D), network=network, sample_shape=(N_DIM,),
                       parameterization=dk.create("parameterization", "edm", precondition=precondition),
                       sampler=dk.create("sampler", "heun", steps=steps))
    noise_gen = torch.Generator().manual_seed(seed + 100)

    def inject(info):
        if state_noise > 0 and info["i"] < steps - 1:
            x = info["x"]
            return x + state_noise * info["t"].to(x.dtype) * torch.randn(x.shape, generator=noise_gen, dtype=x.dtype)
        return None

    with torch.no_grad():
        x = pipe.sample(n, generator=torch.Generator().manual_seed(seed), callback=inject)
    assert pipe.last_nfe == 2 * steps - 1
    return x


def train_weak_mlp(pts, w, D: float, steps: int, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    data = pts[torch.multinomial(w, 20000, replacement=True, generator=g)].float()
    torch.manual_seed(seed)
    net = dk.create("network", "mlp", dim=N_DIM, hidden=128, depth=2, time_scale=1.0)
    pipe = dk.Pipeline(process=process_for(D), network=net, parameterization="edm", sample_shape=(N_DIM,),
                       sampler=dk.create("sampler", "heun", steps=18))
    dk.train(pipe, data, steps=steps, batch_size=256, lr=2e-3, ema=0.99, seed=seed)
    return pipe.network.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and training steps")
    ap.add_argument("--plot", default="", help="write a PNG of the table here")
    ap.add_argument("--json", default="", help="write the raw results here")
    ap.add_argument("--seeds", type=int, default=1, help="data / sampling seeds for the oracle rows (mean, sd)")
    ap.add_argument("--no-weak", action="store_true", help="skip the trained weak-MLP rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = 1000 if args.quick else 4000
    train_steps = 300 if args.quick else 800
    pts, w = make_data()
    settings = [("exact", "none", 0.0, 18, 0.0)]
    settings += [(f"state noise {a}", "none", 0.0, 18, a) for a in (0.5, 1.0)]
    settings += [(f"sigma bias {b:+}", "sigma bias", b, 18, 0.0) for b in (-0.3, 0.5)]
    settings += [(f"output bias {c}", "output bias", c, 18, 0.0) for c in (0.01,)]
    settings += [(f"output noise {a}", "output noise", a, 18, 0.0) for a in (0.3,)]
    settings += [(f"steps {s}", "none", 0.0, s, 0.0) for s in (3,)]
    results: dict[str, dict[str, list[float]]] = {}
    t0 = time.time()
    datasets = [make_data(s) for s in range(args.seeds)]
    for label, kind, size, steps, a in settings:
        per_seed = torch.zeros(args.seeds, len(D_VALUES), 2, dtype=torch.float64)
        for s, (pts_s, w_s) in enumerate(datasets):
            for j, D in enumerate(D_VALUES):
                net = ErroneousOracle(pts_s, w_s, D, kind, size, seed=1 + 10 * s)
                x = sample(net, D, n, steps=steps, state_noise=a, seed=3 + 10 * s)
                per_seed[s, j] = torch.tensor(tv_to_weights(x, pts_s, w_s), dtype=torch.float64)
        row = {"tv": per_seed[:, :, 0].mean(0).tolist(), "dist": per_seed[:, :, 1].mean(0).tolist(),
               "tv_sd": (per_seed[:, :, 0].std(0) if args.seeds > 1 else torch.zeros(len(D_VALUES))).tolist()}
        results[label] = row
        print(f"[{time.time() - t0:6.1f}s] {label}: " + " ".join(f"{v:.3f}" for v in row["tv"]), flush=True)
    weak = {} if args.no_weak else {D: train_weak_mlp(pts, w, D, train_steps) for D in D_VALUES}
    for a in ((0.0, 0.5) if weak else ()):
        row = {"tv": [], "dist": []}
        for D in D_VALUES:
            x = sample(weak[D], D, n, state_noise=a, precondition=True)
            tv, dist = tv_to_weights(x, pts, w)
            row["tv"].append(tv)
            row["dist"].append(dist)
        label = f"weak MLP ({train_steps} steps)" + (f" + state noise {a}" if a else "")
        results[label] = row
        print(f"[{time.time() - t0:6.1f}s] {label}: " + " ".join(f"{v:.3f}" for v in row["tv"]), flush=True)

    names = ["D=inf" if math.isinf(D) else f"D={int(D)}" for D in D_VALUES]
    print(f"\nTV distance of mode frequencies (N = {N_DIM}, K = {N_POINTS}, n = {n}, Heun 35 NFE unless noted; "
          f"lower is better; oracle rows: mean{' ± sd' if args.seeds > 1 else ''} over {args.seeds} seed(s))\n")
    print("| error | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, row in results.items():
        if args.seeds > 1 and "tv_sd" in row:
            cells = [f"{v:.3f} ± {e:.3f}" for v, e in zip(row["tv"], row["tv_sd"])]
        else:
            cells = [f"{v:.3f}" for v in row["tv"]]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nMean distance to the nearest data point / sqrt(N), trained MLPs\n")
    print("| network | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, row in results.items():
        if label.startswith("weak"):
            print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in row["dist"]) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"D": [str(d) for d in D_VALUES], "n": n, "results": results}, f, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
        xs = list(range(len(D_VALUES)))
        for label, row in results.items():
            if label.startswith(("exact", "state", "sigma", "weak")):
                ax.plot(xs, row["tv"], marker="o", label=label)
        ax.set_xticks(xs, names)
        ax.set_ylabel("TV(mode freq., weights)")
        ax.set_title("PFGM++ on 16 points in R^64: error vs augmented dimension D")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot)
        print(f"\nplot written to {args.plot}")


if __name__ == "__main__":
    main()
