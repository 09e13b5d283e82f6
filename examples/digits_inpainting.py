"""Digits inpainting: DPS vs the replacement method, side by side (CPU, a minute or two).

    python examples/digits_cfg.py --out runs/digits_cfg      # trains the model (once)
    python examples/digits_inpainting.py --run runs/digits_cfg

The bottom half (rows 4-7) of 100 test digits is hidden. Both methods sample the unconditional
model (null label) with Euler-Maruyama:

* ``inpaint`` (score-SDE plugin; Song et al. 2021, controllable_generation.py): after every
  step the known pixels are replaced by a forward-noised copy of the observation;
* ``dps`` (this plugin; Chung et al. 2023, Algorithm 1, zeta' = 0.2) with the ``Inpainting``
  operator: after each step the gradient of the residual through x0_hat pulls the sample
  towards the observation.

Reports RMSE on the hidden and on the observed pixels (consistency), and how often an
independent classifier (logistic regression on real digits) recognises the true digit in the
completion; writes ``inpainting.png`` (rows: truth, observation, replacement, DPS) and
``inpainting_metrics.json`` next to the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_cfg import load_digits, reference_classifier, save_grid, train  # noqa: E402

torch.set_num_threads(1)


def lower_half_mask() -> torch.Tensor:
    m = torch.ones(8, 8)
    m[4:] = 0.0
    return m.flatten()  # 1 = observed


def inpaint(pipe, method: str, truth: torch.Tensor, mask: torch.Tensor, steps: int, scale: float):
    import diffusekit as dk
    from diffusekit_guidance.dps import DPS
    from diffusekit_guidance.operators import Inpainting

    y = truth * mask
    if method == "replacement":
        guidance = dk.create("guidance", "inpaint")
        guidance.observe(y, mask)
    else:
        guidance = DPS(operator=Inpainting(mask), measurement=y, scale=scale)  # Algorithm 1 step
    guided = dk.Pipeline(process=pipe.process, network=pipe.network, parameterization=pipe.parameterization,
                         conditioner=pipe.conditioner, guidance=guidance,
                         sampler={"name": "euler-maruyama", "steps": steps}, sample_shape=(64,))
    t0 = time.perf_counter()
    x = guided.sample(truth.shape[0], generator=[500 + i for i in range(truth.shape[0])])
    return x.detach().clamp(-1, 1), guided.last_nfe, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/digits_cfg", help="a run saved by examples/digits_cfg.py")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dps-scale", type=float, default=0.2, help="DPS step zeta' (Algorithm 1)")
    ap.add_argument("--train-steps", type=int, default=2000, help="used only if --run does not exist")
    args = ap.parse_args()
    import diffusekit as dk

    run = Path(args.run)
    pipe = dk.Pipeline.load(run) if (run / "config.json").exists() else train(run, args.train_steps, "mlp")
    if pipe.sample_shape != (64,):
        raise SystemExit("this example expects the flattened (mlp) digits model from examples/digits_cfg.py")
    x, labels = load_digits("test")
    truth, labels = x[: args.n].flatten(1), labels[: args.n]
    mask = lower_half_mask()
    clf = reference_classifier()
    rows, images = [], {}
    for method in ("replacement", "dps"):
        out, nfe, secs = inpaint(pipe, method, truth, mask, args.steps, args.dps_scale)
        hidden = ((out - truth) ** 2 * (1 - mask)).sum(1) / (1 - mask).sum()
        seen = ((out - truth) ** 2 * mask).sum(1) / mask.sum()
        acc = float((torch.as_tensor(clf.predict(out.numpy())) == labels).double().mean())
        rows.append({"method": method, "nfe": nfe, "rmse_hidden": float(hidden.mean().sqrt()),
                     "rmse_observed": float(seen.mean().sqrt()), "class_accuracy": acc, "seconds": secs})
        images[method] = out
    print("\n| method | NFE | RMSE hidden pixels | RMSE observed pixels | classifier recognises the digit | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['nfe']} | {r['rmse_hidden']:.3f} | {r['rmse_observed']:.3f} | "
              f"{r['class_accuracy']:.3f} | {r['seconds']:.1f} |")
    (run / "inpainting_metrics.json").write_text(json.dumps(rows, indent=2))
    obs = truth * mask - (1 - mask)  # hidden pixels shown as background
    grid = torch.cat([truth[:10], obs[:10], images["replacement"][:10], images["dps"][:10]]).reshape(-1, 1, 8, 8)
    save_grid(grid, run / "inpainting.png", "rows: truth, observed top half, replacement, DPS")
    print(f"wrote {run / 'inpainting.png'}")


if __name__ == "__main__":
    main()
