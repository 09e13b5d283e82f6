"""Node orbit counts of graphlets with 2 to 4 nodes (the 15 orbits of Przulj 2007 that the
ORCA program counts; GraphRNN / GDSS use them for the orbit MMD), written here: connected
induced subgraphs are enumerated once each with the ESU algorithm (Wernicke 2006) and each
node of a subgraph is assigned its orbit from the subgraph's induced degree sequence.

Orbits: 0 edge; 1 / 2 end / middle of a 3-path; 3 triangle; 4 / 5 end / inner of a 4-path;
6 / 7 leaf / centre of a 3-star; 8 4-cycle; 9 / 10 / 11 pendant / degree-2 / degree-3 node of
a paw (triangle with a tail); 12 / 13 degree-2 / degree-3 node of a diamond (4-cycle with one
chord); 14 4-clique.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

NUM_ORBITS = 15

# (number of induced edges, sorted degree sequence) -> {degree in the subgraph: orbit}
_ORBITS_3 = {2: {1: 1, 2: 2}, 3: {2: 3}}
_ORBITS_4 = {
    (3, (1, 1, 2, 2)): {1: 4, 2: 5},
    (3, (1, 1, 1, 3)): {1: 6, 3: 7},
    (4, (2, 2, 2, 2)): {2: 8},
    (4, (1, 2, 2, 3)): {1: 9, 2: 10, 3: 11},
    (5, (2, 2, 3, 3)): {2: 12, 3: 13},
    (6, (3, 3, 3, 3)): {3: 14},
}


def connected_subgraphs(neighbors: Sequence[set], k: int) -> Iterator[tuple[int, ...]]:
    """Every connected induced subgraph with k nodes, once (ESU)."""

    def extend(sub: list[int], ext: set, v: int, excl: set):
        if len(sub) == k:
            yield tuple(sub)
            return
        ext = set(ext)
        while ext:
            w = ext.pop()
            new = {u for u in neighbors[w] if u > v and u not in excl}
            yield from extend(sub + [w], ext | new, v, excl | neighbors[w] | {w})

    for v in range(len(neighbors)):
        yield from extend([v], {u for u in neighbors[v] if u > v}, v, neighbors[v] | {v})


def orbit_counts(adj: np.ndarray) -> np.ndarray:
    """(n, 15) orbit counts per node of the undirected graph with 0/1 adjacency ``adj``."""
    a = (np.asarray(adj) > 0)
    a = a | a.T
    np.fill_diagonal(a, False)
    n = a.shape[0]
    neighbors = [set(np.flatnonzero(a[i]).tolist()) for i in range(n)]
    out = np.zeros((n, NUM_ORBITS), dtype=np.int64)
    out[:, 0] = a.sum(1)
    for sub in connected_subgraphs(neighbors, 3):
        deg = [sum(1 for u in sub if u in neighbors[v]) for v in sub]
        table = _ORBITS_3[sum(deg) // 2]
        for v, d in zip(sub, deg):
            out[v, table[d]] += 1
    for sub in connected_subgraphs(neighbors, 4):
        deg = [sum(1 for u in sub if u in neighbors[v]) for v in sub]
        table = _ORBITS_4[(sum(deg) // 2, tuple(sorted(deg)))]
        for v, d in zip(sub, deg):
            out[v, table[d]] += 1
    return out


def graph_orbit_counts(graph) -> np.ndarray:
    """Orbit counts of a networkx graph, (n, 15), rows in ``sorted(graph.nodes())`` order."""
    import networkx as nx

    return orbit_counts(nx.to_numpy_array(graph, nodelist=sorted(graph.nodes())))


__all__ = ["NUM_ORBITS", "orbit_counts", "graph_orbit_counts", "connected_subgraphs"]
