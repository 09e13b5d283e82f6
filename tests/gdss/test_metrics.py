"""Graph metrics written in the plugin: 4-node orbit counts against a brute-force count by
isomorphism with the graphlet templates, the 1-D EMD against scipy, MMD^2 identities and
orderings, and the set metrics."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch
from networkx.algorithms.isomorphism import GraphMatcher

from diffusekit_gdss import metrics as M
from diffusekit_gdss.orbits import orbit_counts

# Graphlet templates with the orbit of each node (Przulj 2007 numbering).
_TEMPLATES = [
    (nx.path_graph(2), {0: 0, 1: 0}),
    (nx.path_graph(3), {0: 1, 1: 2, 2: 1}),
    (nx.complete_graph(3), {0: 3, 1: 3, 2: 3}),
    (nx.path_graph(4), {0: 4, 1: 5, 2: 5, 3: 4}),
    (nx.star_graph(3), {0: 7, 1: 6, 2: 6, 3: 6}),
    (nx.cycle_graph(4), {0: 8, 1: 8, 2: 8, 3: 8}),
    (nx.Graph([(0, 1), (1, 2), (2, 0), (2, 3)]), {0: 10, 1: 10, 2: 11, 3: 9}),
    (nx.Graph([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]), {0: 13, 1: 12, 2: 13, 3: 12}),
    (nx.complete_graph(4), {0: 14, 1: 14, 2: 14, 3: 14}),
]


def brute_force_orbits(g: nx.Graph) -> np.ndarray:
    """Every node subset of size 2..4 whose induced subgraph is connected, matched to its
    template by isomorphism; each node takes the orbit of the template node it maps to."""
    out = np.zeros((g.number_of_nodes(), 15), dtype=np.int64)
    for k in (2, 3, 4):
        for nodes in itertools.combinations(sorted(g.nodes()), k):
            sub = g.subgraph(nodes)
            if not nx.is_connected(sub):
                continue
            for tmpl, orbit in _TEMPLATES:
                if tmpl.number_of_nodes() != k or tmpl.number_of_edges() != sub.number_of_edges():
                    continue
                gm = GraphMatcher(sub, tmpl)
                if gm.is_isomorphic():
                    for v, w in gm.mapping.items():
                        out[v, orbit[w]] += 1
                    break
            else:  # pragma: no cover - every connected graph on <= 4 nodes has a template
                raise AssertionError(f"no template for {sorted(sub.edges())}")
    return out


@pytest.mark.parametrize("seed,n,p", [(0, 7, 0.3), (1, 8, 0.5), (2, 9, 0.7), (3, 8, 0.9), (4, 10, 0.35)])
def test_orbit_counts_match_brute_force(seed, n, p):
    g = nx.gnp_random_graph(n, p, seed=seed)
    got = orbit_counts(nx.to_numpy_array(g, nodelist=range(n)))
    assert np.array_equal(got, brute_force_orbits(g))


def test_orbit_counts_of_small_named_graphs():
    assert orbit_counts(nx.to_numpy_array(nx.complete_graph(4)))[0].tolist() == [3, 0, 0, 3] + [0] * 10 + [1]
    star = orbit_counts(nx.to_numpy_array(nx.star_graph(3)))
    assert star[0, 7] == 1 and star[1, 6] == 1 and star[0, 2] == 3 and star[1, 1] == 2
    cyc = orbit_counts(nx.to_numpy_array(nx.cycle_graph(4)))
    assert cyc[:, 8].tolist() == [1, 1, 1, 1] and cyc[:, 4].sum() == 0  # paths of 4 inside are not induced
    karate = orbit_counts(nx.to_numpy_array(nx.karate_club_graph()))
    assert karate[:, 0].sum() == 2 * 78 and karate[:, 3].sum() == 3 * 45  # 78 edges, 45 triangles


def test_emd_matches_scipy_wasserstein():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.random(12), rng.random(12)
        p, q = p / p.sum(), q / q.sum()
        want = wasserstein_distance(np.arange(12), np.arange(12), p, q)
        assert abs(M.emd_1d(p, q) - want) < 1e-12
        assert abs(M.emd_1d(p, q, 0.01) - 0.01 * want) < 1e-12
    # different lengths are zero-padded; the kernel is exp(-EMD^2 / (2 sigma^2))
    assert M.gaussian_emd([1.0], [0.0, 1.0], sigma=1.0) == pytest.approx(np.exp(-0.5))


def test_mmd_identities_and_ordering():
    rng = np.random.default_rng(0)
    comm = [nx.disjoint_union(nx.gnp_random_graph(8, 0.7, seed=s), nx.gnp_random_graph(8, 0.7, seed=s + 99))
            for s in range(12)]
    comm2 = [nx.disjoint_union(nx.gnp_random_graph(8, 0.7, seed=s), nx.gnp_random_graph(8, 0.7, seed=s + 7))
             for s in range(100, 112)]
    er = M.erdos_renyi_like(comm, 12, seed=0)
    for fn in (M.degree_mmd, M.clustering_mmd, M.orbit_mmd, M.spectral_mmd):
        assert abs(fn(comm, comm)) < 1e-12
        same, other = fn(comm2, comm), fn(er, comm)
        assert 0 <= same < other, (fn.__name__, same, other)
    # the ER baseline has the reference's edge density
    dens = np.mean([nx.density(g) for g in er])
    assert abs(dens - np.mean([nx.density(g) for g in comm])) < 0.05
    assert rng is not None


def test_set_metrics_and_graph_conversion():
    tri, path = nx.complete_graph(3), nx.path_graph(3)
    assert M.uniqueness([tri, nx.relabel_nodes(tri, {0: 2, 2: 0}), path]) == pytest.approx(2 / 3)
    assert M.novelty([tri, path], [nx.path_graph(3)]) == pytest.approx(0.5)
    grid = nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4))
    assert M.grid_validity([grid, nx.path_graph(12)]) == pytest.approx(0.5)
    adj = torch.zeros(1, 5, 5)
    adj[0, 0, 1] = adj[0, 1, 0] = 0.9
    adj[0, 1, 2] = adj[0, 2, 1] = 0.6
    adj[0, 3, 4] = adj[0, 4, 3] = 0.4  # below the 0.5 threshold: nodes 3, 4 are isolated and dropped
    (g,) = M.as_graphs(adj)
    assert g.number_of_nodes() == 3 and g.number_of_edges() == 2
