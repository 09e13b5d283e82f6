"""FrameBridge image-to-video on moving digits: bridge vs diffusion, SAF vs bridge from scratch,
neural prior vs replicated first frame (docs/plugins/bridge.md).

    python examples/framebridge_digits.py all --runs runs/framebridge       # train (resumable) + evaluate
    python examples/framebridge_digits.py train --runs runs/framebridge     # only train
    python examples/framebridge_digits.py evaluate --runs runs/framebridge  # only evaluate

    # two lanes on a 2-core machine (each about 16 minutes per model at 3,000 steps):
    python examples/framebridge_digits.py train --runs R --only classifier diffusion saf &
    python examples/framebridge_digits.py train --runs R --only bridge-v prior bridge-prior &

Every model uses the same video network (``video-unet``, base 16, 0.16M parameters) and the same
budget (``--steps`` optimizer steps of batch 64, default 3,000); training is single-threaded, checkpointed every
250 steps and resumed where it stopped. ``evaluate`` writes ``results.json``, ``results.md`` (the
table of the docs), ``bridge_frames.png`` and ``bridge_strip.gif`` into ``--runs``.

Metrics on held-out videos (frames 1..F-1; frame 0 is the given condition):
* per-frame MSE to the ground truth (values in [-1, 1]);
* temporal consistency: for consecutive frames, the best normalised cross-correlation over
  integer shifts of up to 2 pixels (1 for a digit that only moved), averaged;
* an FVD-like distance (NOT FVD: no I3D network): the Frechet distance between Gaussians fitted
  to the penultimate features of a small video classifier trained here (digit class + final
  position) on generated and on real test videos.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

import diffusekit as dk
from diffusekit.files import atomic_write_json
from diffusekit_bridge.data import moving_digits
from diffusekit_bridge.prior import NeuralPrior, load_prior, prior_condition, train_prior

FRAMES, SIZE = 5, 16
NET = {"name": "video-unet", "frames": FRAMES, "channels": 1, "size": SIZE, "base": 16, "ch_mult": [1, 2],
       "num_res_blocks": 1}
PRIOR = dict(frames=FRAMES, channels=1, size=SIZE, base=16, ch_mult=(1, 2), num_res_blocks=1)
CLASSIFIER_STEPS = 600
TRAIN = dict(batch_size=64, lr=2e-3, warmup=100, ema=0.995, checkpoint_every=250)

MODELS = {
    "diffusion": dict(process={"name": "vp"}, parameterization="v", sampler={"name": "sde-ancestral", "steps": 10}),
    "bridge": dict(process={"name": "bridge", "schedule": "gmax"}, parameterization="eps-psi",
                   sampler={"name": "bridge-sde", "steps": 10}),
    "saf": dict(process={"name": "bridge", "schedule": "gmax"},
                parameterization={"name": "saf", "diffusion": {"name": "vp"}},
                sampler={"name": "bridge-sde", "steps": 10}),
    "bridge-prior": dict(process={"name": "bridge", "schedule": "gmax"}, parameterization="v-psi",
                         sampler={"name": "bridge-sde", "steps": 10}),
    "bridge-v": dict(process={"name": "bridge", "schedule": "gmax"}, parameterization="v-psi",
                     sampler={"name": "bridge-sde", "steps": 10}),
    # the same bridge with a gmax schedule scaled to pixel data: bmax 2 (sigma_1 = 1, c <= 0.5)
    # instead of the latent-space default 50 (sigma_1 = 5, c <= 2.5)
    "bridge-v-b2": dict(process={"name": "bridge", "schedule": "gmax", "beta_max": 2.0}, parameterization="v-psi",
                        sampler={"name": "bridge-sde", "steps": 10}),
}
ORDER = ["classifier", "diffusion", "bridge", "saf", "prior", "bridge-v", "bridge-prior", "bridge-v-b2"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {os.getloadavg()[0]:.2f})", flush=True)


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --------------------------------------------------------------------------- the classifier
class Classifier(nn.Module):
    """Video -> (class logits, final position); features = the 64-d penultimate layer."""

    def __init__(self, frames: int = FRAMES):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(frames, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
                                  nn.SiLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(),
                                  nn.Linear(64 * (SIZE // 4) ** 2, 64), nn.SiLU())
        self.cls = nn.Linear(64, 10)
        self.pos = nn.Linear(64, 2)

    def features(self, v: torch.Tensor) -> torch.Tensor:
        return self.body(v.reshape(v.shape[0], -1, SIZE, SIZE))

    def forward(self, v):
        f = self.features(v)
        return self.cls(f), self.pos(f)


def final_positions(videos: torch.Tensor) -> torch.Tensor:
    """Centre of mass (row, col) / SIZE of the last frame's ink."""
    ink = (videos[:, -1, 0] + 1) / 2
    w = ink / ink.sum((1, 2), keepdim=True).clamp_min(1e-6)
    r = torch.arange(SIZE, dtype=videos.dtype)
    return torch.stack([(w.sum(2) * r).sum(1), (w.sum(1) * r).sum(1)], 1) / SIZE


def train_classifier(out: Path, steps: int) -> dict:
    ex = moving_digits(n=6000, frames=FRAMES, size=SIZE, labels=True)
    videos, labels = ex.x, ex.cond[1]
    pos = final_positions(videos)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(videos), (128,), generator=g)
        logits, p = clf(videos[idx])
        loss = nn.functional.cross_entropy(logits, labels[idx]) + 10 * (p - pos[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            log(f"classifier step {step} loss {loss.item():.4f}")
    from safetensors.torch import save_file

    save_file(clf.state_dict(), str(out / "classifier.safetensors"))
    test = moving_digits(n=500, frames=FRAMES, size=SIZE, split="test", labels=True)
    with torch.no_grad():
        acc = (clf(test.x)[0].argmax(1) == test.cond[1]).float().mean().item()
    return {"seconds": time.perf_counter() - start, "test_accuracy": acc}


def load_classifier(out: Path) -> Classifier:
    from safetensors.torch import load_file

    clf = Classifier()
    clf.load_state_dict(load_file(str(out / "classifier.safetensors")))
    return clf.eval()


# --------------------------------------------------------------------------- training
def make_pipe(key: str) -> dk.Pipeline:
    return dk.Pipeline(network=dict(NET), **MODELS[key])


def train_model(key: str, runs: Path, steps: int, prior_steps: int, meta: dict) -> None:
    d = runs / key
    if key == "classifier":
        if not (runs / "classifier.safetensors").exists():
            load0 = loadavg()
            info = train_classifier(runs, CLASSIFIER_STEPS)
            meta[key] = {**info, "load_start": load0, "load_end": loadavg()}
        return
    if key == "prior":
        if not (runs / "prior.safetensors").exists():
            ex = moving_digits(n=6000, frames=FRAMES, size=SIZE)
            load0 = loadavg()
            sec = train_prior(NeuralPrior(**PRIOR), ex.x, ex.cond, prior_steps, batch_size=64, out=runs, log=log)
            meta[key] = {"seconds": sec, "steps": prior_steps, "load_start": load0, "load_end": loadavg()}
        return
    if (d / "config.json").exists():
        return
    ex = moving_digits(n=6000, frames=FRAMES, size=SIZE)
    cond = ex.cond
    if key == "bridge-prior":
        cond = prior_condition(load_prior(runs / "prior.safetensors", **PRIOR), ex.cond)
    pipe = make_pipe(key)
    if key == "saf":  # SNR-aligned fine-tuning starts from the trained diffusion network
        pipe.network.load_state_dict(dk.Pipeline.load(runs / "diffusion").network.state_dict())
    load0 = loadavg()
    log(f"training {key} for {steps} steps")
    res = dk.train(pipe, (ex.x, cond), steps=steps, out_dir=d, resume=True, progress=False, log_every=250,
                   seed=0, **TRAIN)
    pipe.save(d)
    meta[key] = {"seconds": res.seconds, "steps": steps, "resumed_from": res.resumed_from,
                 "final_loss": res.final_loss, "load_start": load0, "load_end": loadavg()}
    log(f"{key}: {res.seconds:.0f} s, final loss {res.final_loss:.4f}")


def cmd_train(args) -> None:
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    meta_path = runs / "train_meta.json"
    for key in ORDER:
        if args.only and key not in args.only:
            continue
        mine: dict = {}
        train_model(key, runs, args.steps, args.prior_steps, mine)
        # re-read before writing: two lanes (``--only``) may train into the same --runs at once
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta.update(mine)
        atomic_write_json(meta_path, meta)


# --------------------------------------------------------------------------- evaluation
def shift_ncc(a: torch.Tensor, b: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Best normalised cross-correlation of b against integer shifts of a (per video)."""
    best = None
    a0 = a - a.mean((1, 2), keepdim=True)
    for dr in range(-max_shift, max_shift + 1):
        for dc in range(-max_shift, max_shift + 1):
            s = torch.roll(a0, (dr, dc), (1, 2))
            b0 = b - b.mean((1, 2), keepdim=True)
            ncc = (s * b0).sum((1, 2)) / (s.norm(dim=(1, 2)) * b0.norm(dim=(1, 2))).clamp_min(1e-8)
            best = ncc if best is None else torch.maximum(best, ncc)
    return best


def temporal_consistency(v: torch.Tensor) -> float:
    return float(torch.stack([shift_ncc(v[:, k, 0], v[:, k + 1, 0]) for k in range(v.shape[1] - 1)]).mean())


def frechet(f1: torch.Tensor, f2: torch.Tensor) -> float:
    import numpy as np
    from scipy import linalg

    a, b = f1.double().numpy(), f2.double().numpy()
    m1, m2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def metrics(videos: torch.Tensor, truth: torch.Tensor, clf: Classifier, real_feats: torch.Tensor) -> dict:
    sq = (videos[:, 1:] - truth[:, 1:]).pow(2)
    err = sq.mean((0, 2, 3, 4))
    with torch.no_grad():
        feats = clf.features(videos.clamp(-1, 1))
    return {"mse": float(err.mean()), "mse_per_frame": [round(float(e), 5) for e in err],
            "mse_per_video": [round(float(e), 6) for e in sq.mean((1, 2, 3, 4))],
            "temporal": temporal_consistency(videos.clamp(-1, 1)), "fd": frechet(feats, real_feats)}


def cmd_evaluate(args) -> None:
    runs = Path(args.runs)
    torch.manual_seed(0)
    test = moving_digits(n=args.n_test, frames=FRAMES, size=SIZE, split="test")
    truth, first = test.x, test.cond
    clf = load_classifier(runs)
    with torch.no_grad():
        real_feats = clf.features(moving_digits(n=args.n_test, frames=FRAMES, size=SIZE, split="test", seed=7).x)
    rows, samples = [], {}

    def add(name, nfe, videos, seconds, pictured=True):
        m = metrics(videos, truth, clf, real_feats)
        rows.append({"system": name, "nfe": nfe, "seconds": round(seconds, 2), **m})
        if pictured:
            samples.setdefault(name, videos)  # the first pictured run of a system
        log(f"{name}: NFE {nfe} MSE {m['mse']:.4f} temporal {m['temporal']:.3f} FD {m['fd']:.3f}")

    rep = first.unsqueeze(1).expand_as(truth)
    add("replicated first frame (no model)", 0, rep.clone(), 0.0)
    add("real videos (other seed): FD / temporal reference", 0, moving_digits(n=args.n_test, frames=FRAMES, size=SIZE, split="test",
                                                              seed=7).x, 0.0)
    prior_cond = None
    if (runs / "prior.safetensors").exists():
        prior = load_prior(runs / "prior.safetensors", **PRIOR)
        prior_cond = prior_condition(prior, first)
        add("neural prior alone (regression)", 1, prior_cond["x1"], 0.0)
    configs = {
        "diffusion": [("ddim", {"name": "ddim", "steps": 1}), ("ddim", {"name": "ddim", "steps": 2}),
                      ("ddim", {"name": "ddim", "steps": 4}), ("ddim", {"name": "ddim", "steps": 8}),
                      ("ddim", {"name": "ddim", "steps": 10}), ("sde-ancestral", {"name": "sde-ancestral", "steps": 10}),
                      ("dpm-solver++", {"name": "dpm-solver++", "steps": 10}), ("ddim", {"name": "ddim", "steps": 50})],
        "bridge-v": [("bridge-ode", {"name": "bridge-ode", "steps": 1}), ("bridge-ode", {"name": "bridge-ode", "steps": 2}),
                     ("bridge-ode", {"name": "bridge-ode", "steps": 4}), ("bridge-sde", {"name": "bridge-sde", "steps": 4}),
                     ("bridge-sde", {"name": "bridge-sde", "steps": 10}), ("bridge-ode", {"name": "bridge-ode", "steps": 10}),
                     ("bridge-heun", {"name": "bridge-heun", "steps": 5})],
        "bridge-v-b2": [("bridge-sde", {"name": "bridge-sde", "steps": 10}),
                        ("bridge-ode", {"name": "bridge-ode", "steps": 10}),
                        ("bridge-heun", {"name": "bridge-heun", "steps": 5})],
        "bridge": [("bridge-sde", {"name": "bridge-sde", "steps": 10}), ("bridge-ode", {"name": "bridge-ode", "steps": 10}),
                   ("bridge-heun", {"name": "bridge-heun", "steps": 5}), ("bridge-sde", {"name": "bridge-sde", "steps": 50})],
        "saf": [("bridge-sde", {"name": "bridge-sde", "steps": 10}), ("bridge-ode", {"name": "bridge-ode", "steps": 10})],
        "bridge-prior": [("bridge-sde", {"name": "bridge-sde", "steps": 10}),
                         ("bridge-ode", {"name": "bridge-ode", "steps": 10})],
    }
    for key, samplers in configs.items():
        if not (runs / key / "config.json").exists():
            log(f"{key}: not trained, skipped")
            continue
        pipe = dk.Pipeline.load(runs / key)
        cond = prior_cond if key == "bridge-prior" else first
        for sname, spec in samplers:
            if ("sampler", spec["name"]) not in dk.registry():
                log(f"{key} / {sname}: sampler not installed, skipped")
                continue
            start = time.perf_counter()
            with torch.no_grad():
                x = pipe.sample(args.n_test, cond=cond, generator=torch.Generator().manual_seed(1), sampler=spec)
            # the low-NFE rows (1, 2, 4) are in the table only; the picture shows 8-10 NFE
            add(f"{key} / {sname}", pipe.last_nfe, x, time.perf_counter() - start, pictured=pipe.last_nfe >= 8)
    x0_err = x0_error_by_time(runs, truth[:200], first[:200], prior_cond)
    meta = json.loads((runs / "train_meta.json").read_text()) if (runs / "train_meta.json").exists() else {}
    (runs / "results.json").write_text(json.dumps({"rows": rows, "train": meta, "n_test": args.n_test,
                                                       "x0_mse_by_time": x0_err}, indent=2))
    lines = ["| system | NFE | per-frame MSE | MSE frames 1..4 | temporal consistency | FD (classifier features) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['nfe']} | {r['mse']:.4f} | {' / '.join(f'{e:.3f}' for e in r['mse_per_frame'])} "
                     f"| {r['temporal']:.3f} | {r['fd']:.2f} |")
    lines += ["", "Paired per-video differences, bridge minus diffusion at equal NFE (negative: the bridge is "
              "better; mean and 95 % interval over the held-out videos):", "",
              "| NFE | bridge row | diffusion row | bridge MSE | diffusion MSE | difference |", "|---|---|---|---|---|---|"]
    for b in rows:
        for d in rows:
            if not (b["system"].startswith(("bridge", "saf")) and d["system"].startswith("diffusion")
                    and b["nfe"] == d["nfe"]):
                continue
            diff = torch.tensor(b["mse_per_video"]) - torch.tensor(d["mse_per_video"])
            half = 1.96 * float(diff.std()) / len(diff) ** 0.5
            lines.append(f"| {b['nfe']} | {b['system']} | {d['system']} | {b['mse']:.4f} | {d['mse']:.4f} "
                         f"| {float(diff.mean()):+.4f} +- {half:.4f} |")
    times = sorted({t for errs in x0_err.values() for t in errs})
    lines += ["", "x0_hat MSE from x_t on the bridge marginal, by t:", "",
              "| model | " + " | ".join(f"t = {t}" for t in times) + " |", "|---" * (len(times) + 1) + "|"]
    for key, errs in x0_err.items():
        lines.append(f"| {key} | " + " | ".join(f"{errs[t]:.4f}" for t in times) + " |")
    (runs / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    picture(samples, truth, runs / "bridge_frames.png")
    from diffusekit_bridge.writers import write_gif_strip

    best = next((k for k in samples if k.startswith("saf / bridge-sde")), None)
    if best is not None:
        write_gif_strip(runs / "bridge_strip.gif", torch.cat([truth[:4], samples[best][:4]]))


@torch.no_grad()
def x0_error_by_time(runs: Path, truth: torch.Tensor, first: torch.Tensor, prior_cond) -> dict:
    """MSE of each bridge model's x0_hat at fixed t, x_t drawn from the bridge marginal."""
    out = {}
    for key in ("bridge-v", "bridge-v-b2", "bridge", "saf", "bridge-prior"):
        if not (runs / key / "config.json").exists():
            continue
        pipe = dk.Pipeline.load(runs / key).eval()
        cond = {k: v[:len(truth)] for k, v in prior_cond.items()} if key == "bridge-prior" else first
        den = pipe.denoiser(guided=False)
        errs = {}
        for t in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
            tt = torch.full((len(truth),), t)
            x_t = pipe.process.perturb(truth, tt, cond, torch.Generator().manual_seed(3)).x_t
            errs[t] = float((den(x_t, tt, cond).x0 - truth).pow(2).mean())
        out[key] = errs
    return out


def picture(samples: dict, truth: torch.Tensor, path: Path, n: int = 3) -> None:
    from diffusekit.plotting import _pyplot

    plt = _pyplot()
    shown = ("replicated", "neural prior", "diffusion / ddim", "bridge-v / bridge-sde", "bridge-v-b2 / bridge-sde",
             "bridge / bridge-sde",
             "saf / bridge-sde", "bridge-prior / bridge-sde")
    names = ["ground truth"] + [k for k in samples if k.startswith(shown)]
    vids = [truth] + [samples[k] for k in names[1:]]
    fig, axes = plt.subplots(len(names), n, figsize=(n * FRAMES * 0.55, len(names) * 0.62), squeeze=False)
    for r, (name, v) in enumerate(zip(names, vids)):
        for c in range(n):
            strip = v[c, :, 0].clamp(-1, 1).permute(1, 0, 2).reshape(SIZE, FRAMES * SIZE)
            ax = axes[r, c]
            ax.imshow(strip.numpy(), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["train", "evaluate", "all"])
    p.add_argument("--runs", default="runs/framebridge")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps per generative model")
    p.add_argument("--prior-steps", type=int, default=500)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--only", nargs="*", help=f"train only these of {ORDER}")
    p.add_argument("--classifier-steps", type=int, default=CLASSIFIER_STEPS)
    args = p.parse_args()
    globals()["CLASSIFIER_STEPS"] = args.classifier_steps
    torch.set_num_threads(1)
    if args.command in ("train", "all"):
        cmd_train(args)
    if args.command in ("evaluate", "all"):
        cmd_evaluate(args)


if __name__ == "__main__":
    main()
