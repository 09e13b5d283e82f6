"""Train the small score-SDE U-Net on scikit-learn's 8x8 digits on a CPU, write a sample grid
and report test bits/dim through the probability-flow ODE.

    python examples/digits.py --steps 3000 --out runs/digits          # train + evaluate
    python examples/digits.py --phase eval --out runs/digits          # evaluate a saved run

Data: 1,797 images with 17 grey levels (0..16) mapped to [-1, 1], 80/20 train/test split.
Training uses uniformly dequantised images (each level spread over its bin of width 2/16),
so the model is a density on the continuous space; test bits/dim is the dequantised bound
log P(x) >= E_u log p(x + u) + D log(bin width) (Song et al. 2021, likelihood.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffusekit.plotting import save_image_grid

LEVELS = 17  # scikit-learn digits take the values 0..16
EMA_DECAY = 0.999


def dequantised_copies(x: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """``copies`` uniformly dequantised versions of images on the 17-level lattice in [-1, 1]."""
    width = 2.0 / (LEVELS - 1)
    g = torch.Generator().manual_seed(seed)
    reps = x.repeat(copies, 1, 1, 1)
    return reps + (torch.rand(reps.shape, generator=g) - 0.5) * width


save_grid = save_image_grid  # shared helper in diffusekit.plotting


def train(args) -> None:
    import diffusekit as dk

    x_train = dk.create("dataset", "digits", split="train", seed=args.seed)
    data = dequantised_copies(x_train, copies=20, seed=args.seed)
    pipe = dk.Pipeline.from_config({
        "process": {"name": "vp"},
        "parameterization": "eps",
        "network": {"name": "unet", "channels": 1, "image_size": 8, "base": args.base, "ch_mult": [1, 2],
                    "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.1},
    })
    n_params = sum(p.numel() for p in pipe.parameters())
    print(f"[digits] U-Net with {n_params / 1e6:.2f}M parameters; {len(x_train)} training images; "
          f"{args.steps} steps of batch {args.batch}", flush=True)
    res = dk.train(pipe, data, steps=args.steps, batch_size=args.batch, lr=args.lr, warmup=200, ema=EMA_DECAY,
                   seed=args.seed, log_every=100, out_dir=args.out, checkpoint_every=args.checkpoint_every)
    meta = {"steps": args.steps, "batch": args.batch, "lr": args.lr, "params": n_params,
            "train_seconds": res.seconds, "final_loss": res.final_loss, "threads": torch.get_num_threads()}
    (Path(args.out) / "train_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"[digits] trained in {res.seconds:.0f} s, final loss {res.final_loss:.4f}", flush=True)


def load_latest(out: Path, weights: str = "auto", decay: float = EMA_DECAY):
    """The finished pipeline, or the latest training checkpoint (so a run can be evaluated
    while it trains or after it was stopped). The EMA starts at the initial weights, so after
    k steps it still holds decay^k of them: ``weights="auto"`` takes the EMA only once that
    share is below 5 %, else the raw weights."""
    import diffusekit as dk
    from safetensors.torch import load_file

    if (out / "config.json").exists() and (out / "train_meta.json").exists():
        meta = json.loads((out / "train_meta.json").read_text())
        return dk.Pipeline.load(out), meta
    from diffusekit.train import latest_checkpoint

    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise SystemExit(f"{out} holds neither a finished run nor a checkpoint; train first")
    state = json.loads((ckpt / "state.json").read_text())
    pipe = dk.Pipeline.from_config(state["pipeline"])
    tensors = load_file(str(ckpt / "state.safetensors"))
    step = int(state["step"])
    use_ema = weights == "ema" or (weights == "auto" and decay ** step < 0.05)
    prefix = "ema." if use_ema else "model.network."
    pipe.network.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    losses = state.get("losses", [])
    meta = {"steps": step, "final_loss": sum(losses[-50:]) / max(len(losses[-50:]), 1), "checkpoint": True,
            "weights": "ema" if use_ema else "raw"}
    return pipe.eval(), meta


def evaluate(args) -> dict:
    import diffusekit as dk

    out = Path(args.out)
    pipe, meta = load_latest(out, args.weights)
    x_test = dk.create("dataset", "digits", split="test", seed=args.seed)[: args.n_test]
    t0 = time.perf_counter()
    bpd = pipe.log_likelihood(x_test, bits_per_dim=True, dequantize=LEVELS, data_range=(-1.0, 1.0),
                              rtol=args.ll_tol, atol=args.ll_tol, generator=torch.Generator().manual_seed(args.seed))
    t_ll = time.perf_counter() - t0
    sampler = {"name": args.sampler, "steps": args.sample_steps}
    t0 = time.perf_counter()
    x = pipe.sample(50, generator=torch.Generator().manual_seed(args.seed + 1), sampler=sampler)
    t_s = time.perf_counter() - t0
    png = out / "digits_samples.png"
    save_grid(x, png, f"VP + U-Net, {meta.get('steps', '?')} steps; {args.sampler} {pipe.last_nfe} NFE; "
                      f"test {float(bpd.mean()):.2f} bits/dim")
    result = {"test_bpd": float(bpd.mean()), "test_bpd_sem": float(bpd.std() / len(bpd) ** 0.5),
              "n_test": len(x_test), "ll_tol": args.ll_tol, "likelihood_seconds": t_ll, "sample_nfe": pipe.last_nfe,
              "sample_seconds": t_s, **{f"train_{k}": v for k, v in meta.items()}}
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print(f"[digits] test bits/dim {result['test_bpd']:.3f} +- {result['test_bpd_sem']:.3f} "
          f"({len(x_test)} images, {t_ll:.0f} s); samples: {png} ({pipe.last_nfe} NFE, {t_s:.0f} s)")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["all", "train", "eval"], default="all")
    ap.add_argument("--out", default="runs/digits")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--base", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=360)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--ll-tol", type=float, default=1e-5, help="RK45 rtol = atol of the likelihood ODE")
    ap.add_argument("--sampler", default="pc", help="sampler for the grid (pc: reverse diffusion + ALD)")
    ap.add_argument("--sample-steps", type=int, default=200)
    ap.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto", help="checkpoint weights to evaluate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.phase in ("all", "train"):
        train(args)
    if args.phase in ("all", "eval"):
        evaluate(args)


if __name__ == "__main__":
    main()
