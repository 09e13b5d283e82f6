"""GDSS on procedural QM9-sized molecules: sample a trained ``gdss-molecules`` run and score it.

Prints validity without valency correction (RDKit sanitisation of the decoded molecule, bond
orders cut at 0.5 / 1.5 / 2.5), uniqueness, novelty against the train split, the fraction in
one piece, and the total-variation distances of atom-type, bond-order and size frequencies to
the test split, next to the same figures for a baseline with the test split's sizes, atom
frequencies and bond-order frequencies but independent atoms and bonds (what a model that
learnt only the marginals would give).

Train and evaluate (about 15 minutes on one quiet core, then the sampling):
    diffusekit train gdss-molecules --out runs/gdss-molecules --checkpoint-every 500
    python benchmarks/gdss_molecules.py --run runs/gdss-molecules --n 500
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
from diffusekit_gdss import molecules as M


def frequencies(state: dict) -> dict[str, np.ndarray]:
    """Atom-type, bond-order (over bonded pairs) and size frequencies of a decoded state."""
    types = M.atom_types(state["x"])
    atoms = np.bincount(types[types >= 0].numpy(), minlength=len(M.ATOMS)).astype(float)
    orders = torch.triu(M.quantize_bonds(state["adj"]), 1)
    bonds = np.bincount(orders[orders > 0].long().numpy(), minlength=4)[1:].astype(float)
    sizes = np.bincount((types >= 0).sum(1).numpy(), minlength=state["x"].shape[1] + 1).astype(float)
    return {k: v / max(v.sum(), 1) for k, v in (("atoms", atoms), ("bonds", bonds), ("sizes", sizes))}


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def marginal_baseline(test: dict, n: int, seed: int) -> dict:
    """Molecules with the test split's size, atom and bond-order frequencies and its bond
    density, every atom and bond drawn independently."""
    f = frequencies(test)
    rng = np.random.default_rng(seed)
    size_n = test["x"].shape[1]
    types = M.atom_types(test["x"])
    pairs = sum(int(k) * (int(k) - 1) // 2 for k in (types >= 0).sum(1))
    density = float((torch.triu(M.quantize_bonds(test["adj"]), 1) > 0).sum()) / max(pairs, 1)
    x = torch.zeros(n, size_n, len(M.ATOMS))
    adj = torch.zeros(n, size_n, size_n)
    for b in range(n):
        k = int(rng.choice(len(f["sizes"]), p=f["sizes"]))
        x[b, torch.arange(k), torch.as_tensor(rng.choice(len(M.ATOMS), size=k, p=f["atoms"]))] = 1.0
        for i in range(k):
            for j in range(i + 1, k):
                if rng.random() < density:
                    adj[b, i, j] = adj[b, j, i] = float(1 + rng.choice(3, p=f["bonds"]))
    return {"x": x, "adj": adj}


def score(state: dict, test: dict, train_smiles: list[str]) -> dict:
    m = M.molecule_metrics(state, train_smiles)
    f, ft = frequencies(state), frequencies(test)
    return {"validity": m.validity, "uniqueness": m.uniqueness, "novelty": m.novelty, "connected": m.connected,
            **{f"tv_{k}": tv(f[k], ft[k]) for k in f}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/gdss-molecules")
    ap.add_argument("--n", type=int, default=500, help="molecules to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampler", help="JSON sampler spec overriding the run's")
    ap.add_argument("--json", help="result file (default RUN/eval_molecules.json)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("DIFFUSEKIT_THREADS", "1")))
    run = Path(args.run)
    pipe = dk.Pipeline.load(run)
    if args.sampler:
        pipe.sampler = dk.create("sampler", json.loads(args.sampler))
        pipe.check_fit()
    data = dict(pipe.metadata.get("data") or {"name": "molecules"})
    count, size = data.get("count", 2000), data.get("max_atoms", 9)
    train_smiles = M.molecule_split(data.get("seed", 0), count, size, "train")
    test = M.encode(M.molecule_split(data.get("seed", 0), count, size, "test"), size)
    start = time.perf_counter()
    with torch.no_grad():
        state = pipe.sample(args.n, generator=[args.seed + i for i in range(args.n)])
    seconds = time.perf_counter() - start
    rows = {"GDSS, this run": score(state, test, train_smiles),
            "independent atoms and bonds (marginals of the test split)":
                score(marginal_baseline(test, args.n, args.seed), test, train_smiles),
            "test split itself": score(test, test, train_smiles)}
    keys = list(next(iter(rows.values())))
    print("| | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    valid = [m for m in M.decode(state) if m is not None]
    examples = sorted({M.canonical(m) for m in valid}, key=len)[-12:]
    res = {"n": args.n, "seed": args.seed, "nfe": pipe.last_nfe, "sample_seconds": seconds, "rows": rows,
           "sampler": pipe.config["sampler"], "examples": examples,
           "load": open("/proc/loadavg").read().split()[:3]}
    print(json.dumps({k: res[k] for k in ("nfe", "sample_seconds", "examples", "load")}, indent=1))
    out = Path(args.json or run / "eval_molecules.json")
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
