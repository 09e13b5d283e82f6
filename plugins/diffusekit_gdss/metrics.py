"""Graph generation metrics (GraphRNN / GDSS protocol), written here.

MMD^2 between a set of generated graphs and a reference set with a kernel k on per-graph
descriptors: MMD^2 = mean k(g, g') + mean k(h, h') - 2 mean k(g, h) (all pairs, the biased
V-statistic the papers report).

* ``degree``: normalised degree histograms, Gaussian-EMD kernel k = exp(-EMD^2 / (2 sigma^2)),
  sigma = 1, where the EMD of two 1-D histograms with ground distance |i - j| is
  sum_i |CDF_p(i) - CDF_q(i)|.
* ``clustering``: histograms (100 bins on [0, 1]) of the nodes' clustering coefficients,
  Gaussian-EMD with ground distance |i - j| / 100, sigma = 0.1.
* ``orbit``: the mean (over nodes) count of each of the 15 orbits of 2..4-node graphlets
  (:mod:`.orbits`), Gaussian kernel on the Euclidean distance, sigma = 30.
* ``spectral``: normalised-Laplacian eigenvalue histograms (200 bins on [0, 2]), Gaussian
  kernel on the total-variation distance, sigma = 1 (GRAN, Liao et al. 2019).

Sets: ``uniqueness`` (fraction of generated graphs not isomorphic to an earlier one),
``novelty`` (fraction not isomorphic to any training graph), ``grid_validity`` (fraction
isomorphic to a 2-D grid graph with both sides >= 2).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def as_graphs(obj: Any) -> list:
    """A list of networkx graphs from graphs, a GDSS state dict or an adjacency tensor
    (B, N, N) (padded nodes: those without edges are dropped)."""
    import networkx as nx
    import torch

    if isinstance(obj, (list, tuple)) and all(isinstance(g, nx.Graph) for g in obj):
        return list(obj)
    if isinstance(obj, dict):
        from .interop import to_networkx

        return to_networkx(obj)
    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        a = torch.as_tensor(obj).float()
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise ValueError(f"expected adjacency matrices (B, N, N), got shape {tuple(a.shape)}")
        from .interop import quantize

        out = []
        for m in quantize(a).numpy():
            g = nx.from_numpy_array(m)
            g.remove_nodes_from(list(nx.isolates(g)))
            out.append(nx.convert_node_labels_to_integers(g))
        return out
    raise TypeError(f"expected a list of networkx graphs, a GDSS state or adjacency tensors, got {type(obj).__name__}")


# ----------------------------------------------------------------------------- kernels
def emd_1d(p: np.ndarray, q: np.ndarray, bin_width: float = 1.0) -> float:
    """Earth mover's distance of two normalised 1-D histograms on the same bins."""
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() * bin_width)


def _pad(p: np.ndarray, n: int) -> np.ndarray:
    return np.pad(p, (0, n - len(p)))


def _normalise(h: np.ndarray) -> np.ndarray:
    s = h.sum()
    return h / s if s > 0 else h


def gaussian_emd(p, q, sigma: float = 1.0, bin_width: float = 1.0) -> float:
    n = max(len(p), len(q))
    d = emd_1d(_normalise(_pad(np.asarray(p, float), n)), _normalise(_pad(np.asarray(q, float), n)), bin_width)
    return float(np.exp(-d * d / (2 * sigma * sigma)))


def gaussian(p, q, sigma: float = 1.0) -> float:
    n = max(len(p), len(q))
    d = np.linalg.norm(_pad(np.asarray(p, float), n) - _pad(np.asarray(q, float), n))
    return float(np.exp(-d * d / (2 * sigma * sigma)))


def gaussian_tv(p, q, sigma: float = 1.0) -> float:
    n = max(len(p), len(q))
    d = 0.5 * np.abs(_normalise(_pad(np.asarray(p, float), n)) - _normalise(_pad(np.asarray(q, float), n))).sum()
    return float(np.exp(-d * d / (2 * sigma * sigma)))


def mmd2(xs: Sequence, ys: Sequence, kernel: Callable[[Any, Any], float]) -> float:
    """Biased MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)."""
    if not len(xs) or not len(ys):
        raise ValueError("MMD needs two non-empty sets")
    kxx = np.mean([[kernel(a, b) for b in xs] for a in xs])
    kyy = np.mean([[kernel(a, b) for b in ys] for a in ys])
    kxy = np.mean([[kernel(a, b) for b in ys] for a in xs])
    return float(kxx + kyy - 2 * kxy)


# ----------------------------------------------------------------------------- descriptors
def degree_histogram(g) -> np.ndarray:
    import networkx as nx

    return np.asarray(nx.degree_histogram(g), dtype=float)


def clustering_histogram(g, bins: int = 100) -> np.ndarray:
    import networkx as nx

    c = list(nx.clustering(g).values())
    h, _ = np.histogram(c, bins=bins, range=(0.0, 1.0))
    return h.astype(float)


def orbit_descriptor(g) -> np.ndarray:
    from .orbits import graph_orbit_counts

    if g.number_of_nodes() == 0:
        return np.zeros(15)
    return graph_orbit_counts(g).sum(0) / g.number_of_nodes()


def spectral_histogram(g, bins: int = 200) -> np.ndarray:
    import networkx as nx

    if g.number_of_nodes() == 0:
        return np.zeros(bins)
    lap = nx.normalized_laplacian_matrix(g).toarray()
    ev = np.linalg.eigvalsh(lap)
    h, _ = np.histogram(ev, bins=bins, range=(-1e-5, 2.0))
    return h.astype(float)


# ----------------------------------------------------------------------------- MMDs
def degree_mmd(generated, reference, sigma: float = 1.0) -> float:
    """MMD^2 of degree histograms (Gaussian-EMD kernel, sigma 1)."""
    xs = [degree_histogram(g) for g in as_graphs(generated)]
    ys = [degree_histogram(g) for g in as_graphs(reference)]
    return mmd2(xs, ys, lambda p, q: gaussian_emd(p, q, sigma))


def clustering_mmd(generated, reference, sigma: float = 0.1, bins: int = 100) -> float:
    """MMD^2 of clustering-coefficient histograms (100 bins, Gaussian-EMD, sigma 0.1)."""
    xs = [clustering_histogram(g, bins) for g in as_graphs(generated)]
    ys = [clustering_histogram(g, bins) for g in as_graphs(reference)]
    return mmd2(xs, ys, lambda p, q: gaussian_emd(p, q, sigma, 1.0 / bins))


def orbit_mmd(generated, reference, sigma: float = 30.0) -> float:
    """MMD^2 of mean 4-node orbit counts (Gaussian kernel, sigma 30)."""
    xs = [orbit_descriptor(g) for g in as_graphs(generated)]
    ys = [orbit_descriptor(g) for g in as_graphs(reference)]
    return mmd2(xs, ys, lambda p, q: gaussian(p, q, sigma))


def spectral_mmd(generated, reference, sigma: float = 1.0) -> float:
    """MMD^2 of normalised-Laplacian spectra histograms (Gaussian-TV kernel, sigma 1)."""
    xs = [spectral_histogram(g) for g in as_graphs(generated)]
    ys = [spectral_histogram(g) for g in as_graphs(reference)]
    return mmd2(xs, ys, lambda p, q: gaussian_tv(p, q, sigma))


# ----------------------------------------------------------------------------- sets
def _iso_index(graphs):
    import networkx as nx

    buckets: dict[str, list] = {}
    for g in graphs:
        buckets.setdefault(nx.weisfeiler_lehman_graph_hash(g), []).append(g)
    return buckets


def _in(g, buckets) -> bool:
    import networkx as nx

    return any(nx.is_isomorphic(g, h) for h in buckets.get(nx.weisfeiler_lehman_graph_hash(g), []))


def uniqueness(generated, reference=None) -> float:
    """Fraction of generated graphs not isomorphic to an earlier generated graph."""
    import networkx as nx

    graphs = as_graphs(generated)
    seen: dict[str, list] = {}
    unique = 0
    for g in graphs:
        h = nx.weisfeiler_lehman_graph_hash(g)
        if not any(nx.is_isomorphic(g, o) for o in seen.get(h, [])):
            unique += 1
            seen.setdefault(h, []).append(g)
    return unique / max(len(graphs), 1)


def novelty(generated, reference) -> float:
    """Fraction of generated graphs not isomorphic to any graph of ``reference`` (the train set)."""
    graphs = as_graphs(generated)
    buckets = _iso_index(as_graphs(reference))
    return sum(not _in(g, buckets) for g in graphs) / max(len(graphs), 1)


def grid_validity(generated, reference=None) -> float:
    """Fraction of generated graphs isomorphic to a 2-D grid graph (any i x j with i j = n,
    i, j >= 2: a 1 x n grid is a path)."""
    import networkx as nx

    graphs = as_graphs(generated)
    ok = 0
    for g in graphs:
        n = g.number_of_nodes()
        for i in range(2, int(n ** 0.5) + 1):
            if n % i == 0 and nx.is_isomorphic(g, nx.grid_2d_graph(i, n // i)):
                ok += 1
                break
    return ok / max(len(graphs), 1)


def erdos_renyi_like(reference, count: int, seed: int = 0) -> list:
    """Erdos-Renyi graphs G(n, p) with n drawn from the reference sizes and p the reference's
    edge density (edges / node pairs over the whole set): the baseline of the docs' table."""
    import networkx as nx

    ref = as_graphs(reference)
    pairs = sum(g.number_of_nodes() * (g.number_of_nodes() - 1) / 2 for g in ref)
    p = sum(g.number_of_edges() for g in ref) / max(pairs, 1)
    rng = np.random.default_rng(seed)
    sizes = [g.number_of_nodes() for g in ref]
    return [nx.gnp_random_graph(int(rng.choice(sizes)), p, seed=int(rng.integers(2 ** 31))) for _ in range(count)]


METRICS = {"degree-mmd": degree_mmd, "clustering-mmd": clustering_mmd, "orbit-mmd": orbit_mmd,
           "spectral-mmd": spectral_mmd, "uniqueness": uniqueness, "novelty": novelty,
           "grid-validity": grid_validity}

__all__ = ["degree_mmd", "clustering_mmd", "orbit_mmd", "spectral_mmd", "uniqueness", "novelty", "grid_validity",
           "mmd2", "emd_1d", "gaussian_emd", "gaussian", "gaussian_tv", "as_graphs", "erdos_renyi_like", "METRICS"]
