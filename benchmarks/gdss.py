"""GDSS graph generation on CPU: train a recipe, sample, and score against the test split.

For ``community-small`` and ``grid`` (the recipes ``gdss-community-small`` / ``gdss-grid``):

1. train the recipe into ``--run`` (resumes from its checkpoints; skipped when the run holds a
   finished model), timing the training and recording the load average;
2. draw as many graphs as the test split holds (``--n``, the papers' protocol) with the
   recipe's sampler and per-sample seeds (``--by-size``: each graph at its own size, without
   padding, ``diffusekit_gdss.sample_by_size``);
3. MMD^2 of degree, clustering and 4-node orbit statistics (and spectral) to the test split for
   the model, for Erdos-Renyi graphs with the test split's sizes and edge density (mean of 5
   draws) and for the train split itself (the floor a perfect model would reach), next to the
   paper's numbers;
4. a picture of sampled graphs above test graphs (``docs/img/gdss_<dataset>.png``) and a JSON
   record (``RUN/eval.json``).

Run: ``python benchmarks/gdss.py --dataset community-small`` (and ``--dataset grid``); under the
shared machine's CPU rules: ``/tmp/heavy python benchmarks/gdss.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import diffusekit as dk
from diffusekit_gdss import metrics as M
from diffusekit_gdss.data import load_graphs, split_graphs
from diffusekit_gdss.interop import draw_graphs, sample_by_size, to_networkx
from diffusekit_gdss.recipes import GRID_SIDES

#: Jo et al. 2022, Table 1 (degree / clustering / orbit MMD^2)
PAPER = {"community-small": (0.045, 0.086, 0.007), "grid": (0.111, 0.005, 0.070)}


def _graphs(dataset: str, split: str) -> list:
    params = {"side_min": GRID_SIDES[0], "side_max": GRID_SIDES[1]} if dataset == "grid" else {}
    return split_graphs(load_graphs(dataset, 0, **params), split, 0)


def _scores(generated, reference, spectral: bool = True) -> dict[str, float]:
    out = {"degree": M.degree_mmd(generated, reference), "clustering": M.clustering_mmd(generated, reference),
           "orbit": M.orbit_mmd(generated, reference)}
    if spectral:
        out["spectral"] = M.spectral_mmd(generated, reference)
    return out


def train(dataset: str, run: Path) -> dict:
    """Train the recipe (resuming); returns the timing record."""
    record = run / "train_time.json"
    if (run / "config.json").exists() and record.exists():
        return json.loads(record.read_text())
    cfg = dk.create("recipe", f"gdss-{dataset}")
    data, tr = cfg.pop("data"), cfg.pop("train")
    pipe = dk.Pipeline.from_config(cfg)
    load0 = open("/proc/loadavg").read().split()[:3]
    start = time.perf_counter()
    res = dk.train(pipe, data, out_dir=str(run), checkpoint_every=250, resume=True, progress=False, **tr)
    seconds = time.perf_counter() - start
    info = {"steps": res.steps, "seconds_this_call": seconds, "train_seconds": res.seconds,
            "final_loss": res.final_loss, "load_start": load0,
            "load_end": open("/proc/loadavg").read().split()[:3], "threads": torch.get_num_threads()}
    record.write_text(json.dumps(info, indent=2))
    return info


def evaluate(dataset: str, run: Path, n: int | None, seed: int, figure: Path | None, sampler=None,
             by_size: bool = False) -> dict:
    test, train_graphs = _graphs(dataset, "test"), _graphs(dataset, "train")
    n = n or len(test)
    pipe = dk.Pipeline.load(run)
    if sampler is not None:
        pipe.sampler = dk.create("sampler", sampler)
        pipe.check_fit()
    start = time.perf_counter()
    seeds = [seed + i for i in range(n)]
    with torch.no_grad():
        generated = sample_by_size(pipe, n, seeds) if by_size else to_networkx(pipe.sample(n, generator=seeds))
    sample_seconds = time.perf_counter() - start
    model = _scores(generated, test)
    er_runs = [_scores(M.erdos_renyi_like(test, n, seed=s), test) for s in range(5)]
    er = {k: float(np.mean([r[k] for r in er_runs])) for k in er_runs[0]}
    floor = _scores(train_graphs[:max(n, len(test))], test)
    extra = {"uniqueness": M.uniqueness(generated), "novelty": M.novelty(generated, train_graphs)}
    if dataset == "grid":
        extra["grid_validity"] = M.grid_validity(generated)
    edges = float(np.mean([g.number_of_edges() for g in generated]))
    if figure is not None:
        figure.parent.mkdir(parents=True, exist_ok=True)
        draw_graphs({"sampled": generated, "test": test}, figure, cols=8,
                    title=f"GDSS {dataset}: sampled (top) vs test (bottom)")
    return {"dataset": dataset, "n_generated": n, "n_test": len(test), "nfe": pipe.last_nfe,
            "sample_seconds": sample_seconds, "model": model, "erdos_renyi": er, "train_vs_test": floor,
            "paper": dict(zip(("degree", "clustering", "orbit"), PAPER[dataset])), "sets": extra,
            "mean_edges_generated": edges, "mean_edges_test": float(np.mean([g.number_of_edges() for g in test])),
            "sampler": pipe.config["sampler"], "by_size": by_size, "load": open("/proc/loadavg").read().split()[:3]}


def table(res: dict) -> str:
    rows = [("GDSS (paper, Table 1)", res["paper"]), ("GDSS, this recipe", res["model"]),
            ("Erdos-Renyi, same density", res["erdos_renyi"]), ("train split vs test (floor)", res["train_vs_test"])]
    lines = ["| | degree | clustering | orbit | spectral |", "|---|---|---|---|---|"]
    for name, r in rows:
        cells = [f"{r[k]:.4f}" if k in r else "-" for k in ("degree", "clustering", "orbit", "spectral")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(PAPER), default="community-small")
    ap.add_argument("--run", help="run directory (default runs/gdss-<dataset>)")
    ap.add_argument("--n", type=int, help="graphs to generate (default: size of the test split)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", help="picture path (default docs/img/gdss_<dataset>.png)")
    ap.add_argument("--skip-train", action="store_true", help="evaluate an existing run only")
    ap.add_argument("--json", help="result file (default RUN/eval.json)")
    ap.add_argument("--sampler", help="JSON sampler spec overriding the run's (e.g. '{\"name\": \"pc\"}')")
    ap.add_argument("--by-size", action="store_true",
                    help="sample each graph at its own size (diffusekit_gdss.sample_by_size; faster, no padding)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("DIFFUSEKIT_THREADS", "1")))
    run = Path(args.run or f"runs/gdss-{args.dataset}")
    record = run / "train_time.json"
    timing = train(args.dataset, run) if not args.skip_train else (
        json.loads(record.read_text()) if record.exists() else None)
    figure = Path(args.figure or f"docs/img/gdss_{args.dataset.replace('-', '_')}.png")
    res = evaluate(args.dataset, run, args.n, args.seed, figure, json.loads(args.sampler) if args.sampler else None,
                   args.by_size)
    res["training"] = timing
    Path(args.json or run / "eval.json").write_text(json.dumps(res, indent=2))
    print(table(res))
    print(json.dumps({k: res[k] for k in ("sets", "nfe", "sample_seconds", "mean_edges_generated",
                                          "mean_edges_test", "training", "load")}, indent=2))


if __name__ == "__main__":
    main()
