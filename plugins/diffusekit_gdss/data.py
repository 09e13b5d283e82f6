"""Graph datasets generated at run time (no download), with the GDSS papers' protocols, and the
conversions between networkx graphs and padded dense tensors.

* ``community-small``: two communities, each G(n/2, 0.7), with n drawn uniformly from 12..20
  (rounded down to an even number, as ``n // 2`` nodes per community), joined by sparse
  inter-community edges (each cross pair with probability 0.1 / (n/2), at least one edge).
  100 graphs (GraphRNN / GDSS protocol).
* ``grid``: 2-D grid graphs ``grid_2d_graph(i, j)`` for i, j in [side_min, side_max); the paper
  uses 10..19 (100 graphs, up to 361 nodes); the recipe here uses smaller grids (see
  docs/plugins/gdss.md).
* ``ego-small``: the paper takes 1-hop ego networks (4 to 18 nodes) of the Citeseer citation
  graph, which is not bundled; here they are drawn from a procedural citation-like graph (a
  Holme-Kim power-law cluster graph), so numbers are not comparable with the paper's.

Splits: the graphs of one ``seed`` are shuffled by that seed and the first ``test_fraction``
(20%) is the test split, the rest the train split (GDSS protocol), so the splits are fixed and
disjoint. Node features are one-hot degrees (degree clipped at F - 1), the paper's ``deg`` init.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import numpy as np
import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.state import Example


def _nx():
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - the graph extra is missing
        from diffusekit.errors import ConfigError

        raise ConfigError("graph datasets need networkx: pip install 'diffusekit[graph]'", loc="data") from None
    return nx


# ----------------------------------------------------------------------------- generators
def community_graph(rng: np.random.Generator, num_nodes: int, p_in: float = 0.7, p_inter: float = 0.05):
    """Two G(n/2, p_in) communities with sparse bridges (GraphRNN's ``n_community``)."""
    nx = _nx()
    size = num_nodes // 2
    parts = [nx.gnp_random_graph(size, p_in, seed=int(rng.integers(2 ** 31))) for _ in range(2)]
    g = nx.disjoint_union_all(parts)
    p_bridge = p_inter * 2 / size
    added = False
    for u in range(size):
        for v in range(size, 2 * size):
            if rng.random() < p_bridge:
                g.add_edge(u, v)
                added = True
    if not added:
        g.add_edge(int(rng.integers(size)), size + int(rng.integers(size)))
    return g


def community_small(seed: int = 0, count: int = 100, min_nodes: int = 12, max_nodes: int = 20) -> list:
    rng = np.random.default_rng(seed)
    return [community_graph(rng, int(rng.integers(min_nodes, max_nodes + 1))) for _ in range(count)]


def grid_graphs(side_min: int = 10, side_max: int = 20) -> list:
    nx = _nx()
    out = []
    for i in range(side_min, side_max):
        for j in range(side_min, side_max):
            out.append(nx.convert_node_labels_to_integers(nx.grid_2d_graph(i, j)))
    return out


def ego_small(seed: int = 0, count: int = 200, min_nodes: int = 4, max_nodes: int = 18) -> list:
    """1-hop ego networks with min_nodes..max_nodes nodes of a power-law cluster graph."""
    nx = _nx()
    rng = np.random.default_rng(seed)
    base = nx.powerlaw_cluster_graph(3000, 1, 0.4, seed=int(rng.integers(2 ** 31)))
    extra = nx.gnm_random_graph(3000, 1500, seed=int(rng.integers(2 ** 31)))
    base.add_edges_from(extra.edges())
    out = []
    order = rng.permutation(base.number_of_nodes())
    for v in order:
        e = nx.ego_graph(base, int(v), radius=1)
        if min_nodes <= e.number_of_nodes() <= max_nodes:
            out.append(nx.convert_node_labels_to_integers(e))
            if len(out) == count:
                break
    return out


# ----------------------------------------------------------------------------- tensors
def degree_features(adj: torch.Tensor, flags: torch.Tensor, num_features: int) -> torch.Tensor:
    """One-hot node degrees (clipped at num_features - 1), zero on padded nodes: (B, N, F)."""
    deg = adj.sum(-1).round().long().clamp(0, num_features - 1)
    return torch.nn.functional.one_hot(deg, num_features).to(adj.dtype) * flags.unsqueeze(-1).to(adj.dtype)


def size_groups(sizes: torch.Tensor, buckets: int) -> Optional[torch.Tensor]:
    """Group ids (G,) splitting graphs of ``sizes`` (node counts), ordered by size, into
    ``buckets`` groups of (nearly) equal count; graphs of one size share a group. None for one
    bucket (every batch from the whole set)."""
    if buckets <= 1:
        return None
    order = torch.argsort(sizes, stable=True)
    rank_group = torch.arange(len(sizes)) * buckets // max(len(sizes), 1)
    groups = torch.empty_like(sizes, dtype=torch.long)
    groups[order] = rank_group
    for s in sizes.unique():  # one size, one group (the smallest group id it received)
        same = sizes == s
        groups[same] = groups[same].min()
    return groups


def graphs_to_tensors(graphs, max_nodes: int, num_features: int, size_buckets: int = 1) -> Example:
    """Padded dense tensors: ``Example(x={"x": (G, N, F), "adj": (G, N, N)}, cond=flags (G, N))``,
    with ``groups`` from :func:`size_groups` when ``size_buckets`` > 1."""
    nx = _nx()
    g_count = len(graphs)
    adj = torch.zeros(g_count, max_nodes, max_nodes)
    flags = torch.zeros(g_count, max_nodes)
    for k, g in enumerate(graphs):
        n = g.number_of_nodes()
        if n > max_nodes:
            from diffusekit.errors import ConfigError

            raise ConfigError(f"graph {k} has {n} nodes, more than max_nodes = {max_nodes}; raise max_nodes",
                              loc="max_nodes")
        a = torch.as_tensor(nx.to_numpy_array(g, nodelist=sorted(g.nodes())), dtype=torch.float32)
        adj[k, :n, :n] = (a > 0).float()
        flags[k, :n] = 1.0
    adj = adj * (1 - torch.eye(max_nodes))
    return Example({"x": degree_features(adj, flags, num_features), "adj": adj}, flags,
                   size_groups(flags.sum(1).long(), size_buckets))


def split_graphs(graphs: list, split: str, seed: int, test_fraction: float = 0.2) -> list:
    perm = np.random.default_rng(seed + 1234).permutation(len(graphs))
    n_test = int(math.ceil(len(graphs) * test_fraction))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    return [graphs[i] for i in idx]


def node_count_weights(graphs: list, max_nodes: int) -> list[float]:
    """Counts of graph sizes 1..max_nodes (the process's ``node_counts``)."""
    w = [0.0] * max_nodes
    for g in graphs:
        w[g.number_of_nodes() - 1] += 1.0
    return w


class GraphDataConfig(ComponentConfig):
    split: Literal["train", "test"] = "train"
    seed: int = Field(0, description="generation and split seed")
    max_nodes: Optional[int] = Field(None, ge=1, description="padding size N (default: the dataset's largest graph)")
    num_features: int = Field(10, ge=1, description="F, one-hot degree channels")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n: Optional[int] = Field(None, ge=1, description="keep the first n graphs of the split (None: all)")
    size_buckets: int = Field(
        1, ge=1, description="training batches come from one of this many size ranges (equal-count groups of "
                             "graphs ordered by size) and are trimmed to their largest graph: faster steps on "
                             "mixed-size data; 1: batches from the whole split")


class GridDataConfig(GraphDataConfig):
    side_min: int = Field(10, ge=1, description="smallest grid side (paper: 10)")
    side_max: int = Field(20, ge=2, description="grid sides are < side_max (paper: 20)")
    num_features: int = Field(5, ge=1, description="F, one-hot degree channels")


def load_graphs(name: str, seed: int = 0, **params) -> list:
    """The whole generated dataset (both splits) as networkx graphs."""
    if name == "community-small":
        return community_small(seed)
    if name == "grid":
        return grid_graphs(params.get("side_min", 10), params.get("side_max", 20))
    if name == "ego-small":
        return ego_small(seed)
    raise ValueError(f"unknown graph dataset {name!r}; choose community-small, grid or ego-small")


def _dataset(name: str, split: str, seed: int, max_nodes, num_features: int, test_fraction: float, n=None,
             size_buckets: int = 1, **params):
    graphs = split_graphs(load_graphs(name, seed, **params), split, seed, test_fraction)
    if n is not None:
        graphs = (graphs * (-(-n // len(graphs))))[:n]
    size = max_nodes or max(g.number_of_nodes() for g in load_graphs(name, seed, **params))
    return graphs_to_tensors(graphs, size, num_features, size_buckets)


def community_small_dataset(split="train", seed=0, max_nodes=None, num_features=10, test_fraction=0.2,
                            n=None, size_buckets=1) -> Example:
    """community-small graphs (12..20 nodes) as padded tensors; node flags as the condition."""
    return _dataset("community-small", split, seed, max_nodes, num_features, test_fraction, n, size_buckets)


def ego_small_dataset(split="train", seed=0, max_nodes=None, num_features=10, test_fraction=0.2,
                      n=None, size_buckets=1) -> Example:
    """ego-small graphs (4..18 nodes, procedural) as padded tensors; node flags as the condition."""
    return _dataset("ego-small", split, seed, max_nodes, num_features, test_fraction, n, size_buckets)


def grid_dataset(split="train", seed=0, max_nodes=None, num_features=5, test_fraction=0.2, n=None, side_min=10,
                 side_max=20, size_buckets=1) -> Example:
    """2-D grid graphs as padded tensors; node flags as the condition."""
    return _dataset("grid", split, seed, max_nodes, num_features, test_fraction, n, size_buckets, side_min=side_min,
                    side_max=side_max)


__all__ = ["community_small", "grid_graphs", "ego_small", "graphs_to_tensors", "degree_features", "split_graphs",
           "node_count_weights", "size_groups", "load_graphs", "community_small_dataset", "grid_dataset", "ego_small_dataset"]
