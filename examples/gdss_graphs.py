"""GDSS on community-small graphs in a few minutes of CPU: train, sample, convert to networkx,
score against the test split and write pictures / JSON.

    python examples/gdss_graphs.py --steps 600 --out runs/gdss-example

The full recipes (``diffusekit train gdss-community-small`` / ``gdss-grid``) and the table in
docs/plugins/gdss.md come from ``benchmarks/gdss.py``; this example is the short version of the
same workflow through the Python API.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import networkx as nx
import torch

import diffusekit as dk
from diffusekit_gdss import metrics, to_networkx
from diffusekit_gdss.data import load_graphs, split_graphs
from diffusekit_gdss.interop import draw_graphs, node_link


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="training steps (the recipe: 2500)")
    ap.add_argument("--sampler-steps", type=int, default=500)
    ap.add_argument("--out", default="runs/gdss-example")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)

    # the recipe's pipeline: gdss process (VP(0.1, 1) for X and A), gdss-net, eps loss, pc sampler
    cfg = dk.create("recipe", "gdss-community-small")
    data, train = cfg.pop("data"), cfg.pop("train")
    cfg["sampler"]["steps"] = args.sampler_steps
    pipe = dk.Pipeline.from_config(cfg)
    train.update(steps=args.steps)
    res = dk.train(pipe, data, out_dir=str(out), progress=True, **train)
    print(f"trained {res.steps} steps in {res.seconds:.0f} s, final loss {res.final_loss:.2f}")

    # unconditional sampling: node flags (graph sizes) are drawn from the train split's sizes
    state = pipe.sample(20, generator=list(range(20)))
    graphs = to_networkx(state)
    test = split_graphs(load_graphs("community-small", 0), "test", 0)
    scores = {"degree": metrics.degree_mmd(graphs, test), "clustering": metrics.clustering_mmd(graphs, test),
              "orbit": metrics.orbit_mmd(graphs, test)}
    er = metrics.erdos_renyi_like(test, 20)
    baseline = {"degree": metrics.degree_mmd(er, test), "clustering": metrics.clustering_mmd(er, test),
                "orbit": metrics.orbit_mmd(er, test)}
    print("MMD^2 to the test split  model:", {k: round(v, 4) for k, v in scores.items()})
    print("                  Erdos-Renyi:", {k: round(v, 4) for k, v in baseline.items()})
    print("connected:", sum(nx.is_connected(g) for g in graphs if g.number_of_nodes()), "/", len(graphs))

    (out / "graphs.json").write_text(json.dumps(node_link(graphs)))
    draw_graphs({"sampled": graphs, "test": test}, out / "graphs.png")
    print(f"wrote {out / 'graphs.json'} and {out / 'graphs.png'}; the CLI does the same with "
          f"`diffusekit sample {out} --n 20 --out graphs.json` (or --out grid.png)")


if __name__ == "__main__":
    main()
