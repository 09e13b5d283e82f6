"""networkx interop: sampled states -> graphs, node-link JSON and a picture grid."""

from __future__ import annotations

from typing import Any, Optional

import torch


def quantize(adj: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Edges where the (symmetrised) adjacency is >= threshold; zero diagonal."""
    a = (adj + adj.transpose(-1, -2)) / 2
    q = (a >= threshold).to(adj.dtype)
    n = q.shape[-1]
    return q * (1 - torch.eye(n, dtype=q.dtype, device=q.device))


def flags_from_state(state: dict) -> torch.Tensor:
    """Node flags of a GDSS state: padded nodes have all-zero feature rows (the process masks
    them exactly through perturbation, prior and sampling), real nodes do not."""
    return (state["x"].abs().sum(-1) > 0).to(state["x"].dtype)


def to_networkx(state: dict, flags: Optional[torch.Tensor] = None, threshold: float = 0.5) -> list:
    """One ``networkx.Graph`` per sample of a state ``{"x": (B, N, F), "adj": (B, N, N)}``.

    ``flags`` (B, N) selects the real nodes (default: the non-zero feature rows, see
    :func:`flags_from_state`); the adjacency is quantised at ``threshold`` (0.5). Node
    attribute ``x`` holds the node's feature vector."""
    import networkx as nx

    if not isinstance(state, dict) or "adj" not in state or "x" not in state:
        raise TypeError("to_networkx: expected a GDSS state {'x': (B, N, F), 'adj': (B, N, N)}")
    adj = quantize(state["adj"].detach().cpu().float(), threshold)
    x = state["x"].detach().cpu().float()
    f = (flags_from_state(state) if flags is None else flags).detach().cpu().bool()
    graphs = []
    for b in range(adj.shape[0]):
        idx = torch.nonzero(f[b]).flatten().tolist()
        g = nx.Graph()
        for new, old in enumerate(idx):
            g.add_node(new, x=x[b, old].tolist())
        sub = adj[b][idx][:, idx]
        rows, cols = torch.nonzero(torch.triu(sub, 1), as_tuple=True)
        g.add_edges_from(zip(rows.tolist(), cols.tolist()))
        graphs.append(g)
    return graphs


def sample_by_size(pipe, n: int, seeds, **sample_kwargs) -> list:
    """``n`` graphs from a GDSS pipeline, each sampled at its own size: sample i draws its node
    count from the process's ``node_counts`` with ``torch.Generator().manual_seed(seeds[i])``
    (as ``pipe.sample(n, generator=seeds)`` does), then the graphs of one size are sampled
    together with flags of that width, so no step spends time on padding (the grid recipe's
    8-graph draw of 8 sizes: 76 s against 101 s padded; more graphs per size gain more). The
    same generators continue into the sampler, so graph i depends only on ``seeds[i]`` and on
    which graphs share its size (samplers that couple a batch, e.g. Langevin with ``norm="batch"``, see the group).
    ``sample_kwargs`` go to ``pipe.sample`` (``sampler=...``). Returns networkx graphs in
    order."""
    seeds = list(seeds)
    if len(seeds) != n:
        raise ValueError(f"sample_by_size: {len(seeds)} seeds for n = {n} graphs; give one seed per graph")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    flags = pipe.process.sample_cond(n, gens)
    sizes = flags.sum(1).long()
    out: list = [None] * n
    for k in sorted(set(sizes.tolist())):
        idx = torch.nonzero(sizes == k).flatten().tolist()
        state = pipe.sample(len(idx), cond=flags[idx][:, :k].to(pipe.device), generator=[gens[i] for i in idx],
                            **sample_kwargs)
        for i, g in zip(idx, to_networkx(state, flags=flags[idx][:, :k])):
            out[i] = g
    return out


def node_link(graphs: list) -> list[dict]:
    """networkx node-link dicts, one per graph (JSON-ready)."""
    import networkx as nx

    return [nx.node_link_data(g, edges="links") for g in graphs]


def draw_graphs(rows: dict[str, list], path, cols: int = 8, title: str | None = None) -> None:
    """A picture with one row of up to ``cols`` graph drawings per entry of ``rows``
    (``{"sampled": graphs, "test": graphs}``), spring layout with a fixed seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    names = list(rows)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.6 * cols, 1.8 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        graphs = rows[name][:cols]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_axis_off()
            if c < len(graphs):
                g = graphs[c]
                pos = nx.spring_layout(g, seed=0)
                nx.draw_networkx(g, pos, ax=ax, node_size=12, with_labels=False, width=0.6,
                                 node_color="C0" if r == 0 else "C1")
            if c == 0:
                ax.set_title(name, fontsize=9, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _is_graph_state(samples: Any) -> bool:
    return isinstance(samples, dict) and set(samples) == {"x", "adj"} and all(
        torch.is_tensor(v) for v in samples.values()) and samples["adj"].ndim == 3 and samples["x"].ndim == 3


try:  # sample writers need the core's writer hook
    from diffusekit.writers import SampleWriter
except ImportError:  # pragma: no cover - an older core without writers
    SampleWriter = object  # type: ignore[assignment,misc]


class GraphJSONWriter(SampleWriter):
    """networkx node-link JSON, one object per sampled graph (GDSS states; A quantised at 0.5)"""

    suffixes = (".json",)

    def accepts(self, samples, context):
        return _is_graph_state(samples)

    def write(self, path, samples, context):
        import json

        graphs = to_networkx(samples)
        with open(path, "w") as f:
            json.dump(node_link(graphs), f)
        return f"{len(graphs)} graphs as networkx node-link JSON"


class GraphGridWriter(SampleWriter):
    """a picture of sampled graphs (GDSS states), beside held-out graphs when the run records its dataset"""

    suffixes = (".png",)

    def accepts(self, samples, context):
        return _is_graph_state(samples)

    def write(self, path, samples, context):
        graphs = to_networkx(samples)
        rows = {"sampled": graphs}
        ref = context.reference(min(len(graphs), 8)) if context.reference is not None else None
        if _is_graph_state(ref):
            rows["held-out data"] = to_networkx(ref)
        draw_graphs(rows, path, cols=min(8, max(len(graphs), 1)),
                    title=f"{len(graphs)} sampled graphs" + (f", {context.nfe} NFE" if context.nfe else ""))
        return "a picture of " + " and ".join(rows) + " graphs"
