"""Ready pipeline configs for ``diffusekit train gdss-community-small --out RUN`` and
``diffusekit train gdss-grid --out RUN``, sized to train in 10 to 20 minutes on one CPU core
(see docs/plugins/gdss.md for the measured times). The process's ``node_counts`` are the
train split's graph sizes, so unconditional sampling draws graph sizes like the data."""

from __future__ import annotations

from typing import Any

from .data import load_graphs, node_count_weights, split_graphs

#: grid sides of the CPU recipe (the paper uses 10..19, up to 361 nodes)
GRID_SIDES = (4, 10)


def _network(max_nodes: int, num_features: int, **over) -> dict[str, Any]:
    net = {"name": "gdss-net", "max_nodes": max_nodes, "num_features": num_features, "depth": 2, "nhid": 16,
           "adim": 16, "heads": 4, "layers": 3, "linears": 2, "c_init": 2, "c_hid": 8, "c_final": 4}
    net.update(over)
    return net


def community_small_recipe() -> dict[str, Any]:
    """GDSS on community-small (12..20 nodes): the paper's SDEs VP(0.1, 1) for X and A, its
    network sizes, Euler-Maruyama + Langevin (snr 0.05, scale_eps 0.7), 1000 steps."""
    train = split_graphs(load_graphs("community-small", 0), "train", 0)
    n, f = 20, 10
    return {
        "process": {"name": "gdss", "preset": "community-small", "max_nodes": n, "num_features": f,
                    "node_counts": node_count_weights(train, n)},
        "parameterization": {"name": "eps", "reduce": "sum"},
        "network": _network(n, f),
        "sampler": {"name": "pc", "steps": 1000, "predictor": "euler-maruyama", "corrector": "langevin",
                    "snr": 0.05, "scale_eps": 0.7, "norm": "batch"},
        "data": {"name": "community-small", "split": "train", "max_nodes": n, "num_features": f},
        "train": {"steps": 2500, "batch_size": 32, "lr": 5e-3, "weight_decay": 1e-4, "grad_clip": 1.0,
                  "ema": 0.999, "warmup": 100},
    }


def grid_recipe() -> dict[str, Any]:
    """GDSS on small 2-D grids (sides 4..9, 16..81 nodes; the paper: 10..19): the paper's SDEs
    VP(0.1, 1) for X and VP(0.2, 0.8) for A, the S4 solver, 1000 steps. Departures from the
    paper, measured in docs/plugins/gdss.md: the network reads the graph size
    (``size_conditioned``; the paper's has no explicit node count and generates one edge density at
    every size), predicts the clean state (``x0``) instead of the noise, and trains on batches
    of similar-size grids trimmed to their largest (``size_buckets``: a step costs half a padded
    one) with a cosine learning-rate decay; batches of 16 for 2,800 steps (the same graphs seen
    as 8 x 5,600, with half the gradient noise: every one of five seeds passes its three draws)."""
    lo, hi = GRID_SIDES
    graphs = load_graphs("grid", 0, side_min=lo, side_max=hi)
    train = split_graphs(graphs, "train", 0)
    n, f = (hi - 1) ** 2, 5
    return {
        "process": {"name": "gdss", "preset": "grid", "max_nodes": n, "num_features": f,
                    "node_counts": node_count_weights(train, n)},
        "parameterization": {"name": "x0", "reduce": "sum"},
        "network": _network(n, f, size_conditioned=True),
        "sampler": {"name": "s4", "steps": 1000, "corrector": "langevin", "snr": 0.1, "scale_eps": 0.7},
        "data": {"name": "grid", "split": "train", "max_nodes": n, "num_features": f, "side_min": lo, "side_max": hi,
                 "size_buckets": 4},
        "train": {"steps": 2800, "batch_size": 16, "lr": 5e-3, "weight_decay": 1e-4, "grad_clip": 1.0,
                  "ema": 0.999, "warmup": 100, "lr_decay": "cosine"},
    }


def molecules_recipe() -> dict[str, Any]:
    """GDSS on procedural QM9-sized molecules (at most 9 heavy atoms C, N, O, F; bond orders
    0..3 in the adjacency): the paper's QM9 SDEs VE(0.1, 1) for X and A, its QM9 network
    (6 attention layers), reverse diffusion + Langevin (snr 0.2, scale_eps 0.7), 1000 steps.
    Samples decode with bond-order thresholds 0.5 / 1.5 / 2.5 (diffusekit_gdss.molecules)."""
    from .molecules import encode, molecule_split

    n, f = 9, 4
    sizes = encode(molecule_split(0, 2000, n, "train"), n)["x"].sum((1, 2)).long()
    counts = [float((sizes == k).sum()) for k in range(1, n + 1)]
    return {
        "process": {"name": "gdss", "preset": "qm9", "max_nodes": n, "num_features": f, "node_counts": counts},
        "parameterization": {"name": "eps", "reduce": "sum"},
        "network": _network(n, f, layers=6, linears=3),
        "sampler": {"name": "pc", "steps": 1000, "predictor": "euler-maruyama", "corrector": "langevin",
                    "snr": 0.2, "scale_eps": 0.7, "norm": "batch"},
        "data": {"name": "molecules", "split": "train", "max_atoms": n},
        "train": {"steps": 2000, "batch_size": 64, "lr": 5e-3, "weight_decay": 1e-4, "grad_clip": 1.0,
                  "ema": 0.999, "warmup": 100, "lr_decay": "cosine"},
    }
