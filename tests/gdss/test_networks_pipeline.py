"""GDSS networks (symmetry, masking, permutation equivariance, time conditioning), training and
sampling through the pipeline, save / load, to_networkx, the CLI writers and the datasets."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

import diffusekit as dk
from diffusekit.testing.conformance import check_object

from diffusekit_gdss import to_networkx
from diffusekit_gdss.data import grid_graphs, load_graphs, split_graphs
from diffusekit_gdss.networks import GDSSNetwork

SMALL = {"max_nodes": 8, "num_features": 4, "nhid": 8, "adim": 8, "c_hid": 4, "c_final": 2, "layers": 2}


def test_network_outputs_are_symmetric_masked_and_permutation_equivariant():
    torch.manual_seed(0)
    net = GDSSNetwork(**SMALL).eval()
    x, t, flags = net.example_inputs(3)
    with torch.no_grad():
        out = net(x, t, flags)
    a = out["adj"]
    assert torch.allclose(a, a.transpose(1, 2), atol=1e-6)
    assert float(a.diagonal(dim1=1, dim2=2).abs().max()) == 0.0
    pad = flags == 0
    assert float(out["x"][pad].abs().sum()) == 0.0 and float(a[pad].abs().sum()) == 0.0
    perm = torch.randperm(8)
    xp = {"x": x["x"][:, perm], "adj": x["adj"][:, perm][:, :, perm]}
    with torch.no_grad():
        outp = net(xp, t, flags[:, perm])
    assert torch.allclose(outp["x"], out["x"][:, perm], atol=1e-5)
    assert torch.allclose(outp["adj"], out["adj"][:, perm][:, :, perm], atol=1e-5)


def test_paper_network_ignores_t_and_the_time_conditioned_option_reads_it():
    torch.manual_seed(0)
    for conditioned in (False, True):
        net = GDSSNetwork(**SMALL, time_conditioned=conditioned).eval()
        x, t, flags = net.example_inputs(2)
        with torch.no_grad():
            d = (net(x, t, flags)["adj"] - net(x, t * 0.1, flags)["adj"]).abs().max()
        assert (float(d) > 1e-4) == conditioned
        assert net.time_conditioned == conditioned
    res = check_object("network", GDSSNetwork(**SMALL))
    assert all(r.status == "pass" for r in res), [r.line() for r in res]


def test_size_conditioned_network_reads_the_flagged_node_count():
    """The same graph padded to 8 or to 12 nodes: the paper network's outputs on the real nodes
    do not depend on the padding (padded rows and columns are masked); with
    ``size_conditioned`` they do, because n / max_nodes is an input channel."""
    torch.manual_seed(0)
    for conditioned in (False, True):
        small = GDSSNetwork(**SMALL, size_conditioned=conditioned).eval()
        big = GDSSNetwork(**{**SMALL, "max_nodes": 12}, size_conditioned=conditioned).eval()
        big.load_state_dict(small.state_dict())
        x, t, flags = small.example_inputs(2)
        pad = {"x": torch.nn.functional.pad(x["x"], (0, 0, 0, 4)), "adj": torch.nn.functional.pad(x["adj"], (0, 4, 0, 4))}
        with torch.no_grad():
            a, b = small(x, t, flags), big(pad, t, torch.nn.functional.pad(flags, (0, 4)))
        d = max(float((a["x"] - b["x"][:, :8]).abs().max()), float((a["adj"] - b["adj"][:, :8, :8]).abs().max()))
        assert (d > 1e-4) == conditioned, (conditioned, d)
    res = check_object("network", GDSSNetwork(**SMALL, size_conditioned=True, time_conditioned=True))
    assert all(r.status == "pass" for r in res), [r.line() for r in res]


def test_datasets_fixed_splits_and_protocol():
    graphs = load_graphs("community-small", 0)
    assert len(graphs) == 100 and {g.number_of_nodes() for g in graphs} <= set(range(12, 21, 2))
    for g in graphs:  # two communities of n / 2 nodes joined by at least one bridge
        half = g.number_of_nodes() // 2
        assert any((u < half) != (v < half) for u, v in g.edges())
        assert nx.density(g.subgraph(range(half))) > 0.3
    train, test = split_graphs(graphs, "train", 0), split_graphs(graphs, "test", 0)
    assert len(train) == 80 and len(test) == 20
    assert not ({id(g) for g in train} & {id(g) for g in test})
    again = split_graphs(load_graphs("community-small", 0), "test", 0)
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(test, again))
    assert len(grid_graphs(10, 20)) == 100 and max(g.number_of_nodes() for g in grid_graphs(10, 20)) == 361
    ex = dk.create("dataset", {"name": "community-small", "split": "test"})
    assert ex.x["adj"].shape == (20, 20, 20) and ex.cond.shape == (20, 20)
    sizes = ex.cond.sum(1)
    assert torch.equal(sizes, torch.tensor([float(g.number_of_nodes()) for g in test]))
    assert torch.equal(ex.x["adj"], ex.x["adj"].transpose(1, 2))
    assert len(dk.create("dataset", {"name": "grid", "side_min": 3, "side_max": 5, "n": 3}).x["adj"]) == 3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A GDSS pipeline trained 40 steps on community-small graphs, saved."""
    torch.manual_seed(0)
    cfg = dk.create("recipe", "gdss-community-small")
    cfg["network"].update({"nhid": 8, "adim": 8, "c_hid": 4, "c_final": 2, "layers": 2})
    cfg["sampler"] = {"name": "s4", "steps": 20}
    data = cfg.pop("data")
    cfg.pop("train")
    pipe = dk.Pipeline.from_config(cfg)
    res = dk.train(pipe, data, steps=40, batch_size=16, lr=5e-3, ema=0.0, progress=False)
    assert res.losses[-1] < res.losses[0]  # it learns something within 40 steps
    run = tmp_path_factory.mktemp("gdss") / "run"
    pipe.save(run)
    return run


def test_sampling_save_load_and_to_networkx(tiny_run):
    pipe = dk.Pipeline.load(tiny_run)
    out = pipe.sample(5, generator=[0, 1, 2, 3, 4])
    again = dk.Pipeline.load(tiny_run).sample(5, generator=[0, 1, 2, 3, 4])
    assert all(torch.equal(out[k], again[k]) for k in out)
    assert pipe.last_nfe == 20
    flags = pipe.process.sample_cond(5, [torch.Generator().manual_seed(s) for s in range(5)])
    graphs = to_networkx(out)
    assert [g.number_of_nodes() for g in graphs] == flags.sum(1).int().tolist()  # padding respected
    assert [g.number_of_nodes() for g in to_networkx(out, flags=torch.ones(5, 20))] == [20] * 5
    assert all(isinstance(g, nx.Graph) and nx.number_of_selfloops(g) == 0 for g in graphs)
    pc = pipe.sample(2, sampler={"name": "pc", "steps": 5, "corrector": "langevin", "snr": 0.05, "scale_eps": 0.7})
    assert torch.equal(pc["adj"], pc["adj"].transpose(1, 2))


def test_cli_sample_writes_node_link_json_and_a_picture(tiny_run, tmp_path, capsys):
    from diffusekit.cli import main

    out = tmp_path / "graphs.json"
    assert main(["sample", str(tiny_run), "--n", "3", "--out", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert isinstance(data, list) and len(data) == 3
    graphs = [nx.node_link_graph(d, edges="links") for d in data]
    assert all(12 <= g.number_of_nodes() <= 20 for g in graphs)  # sizes from the train split's node counts
    png = tmp_path / "grid.png"
    assert main(["sample", str(tiny_run), "--n", "4", "--out", str(png), "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sampled and held-out data graphs" in capsys.readouterr().out  # the run records its dataset


@pytest.mark.slow
def test_network_exports_to_onnx_with_one_input_per_leaf(tmp_path):
    import onnx

    from diffusekit_onnx.export_denoiser import export_network

    torch.manual_seed(0)
    net = GDSSNetwork(**SMALL).eval()
    report = export_network(net, tmp_path / "gdss.onnx")
    assert report.max_abs_err <= 1e-4 or report.max_rel_err <= 1e-4, report
    model = onnx.load(str(tmp_path / "gdss.onnx"))
    assert [i.name for i in model.graph.input] == ["x_t.adj", "x_t.x", "t", "cond"]
    assert [o.name for o in model.graph.output] == ["out.adj", "out.x"]
    conditioned = GDSSNetwork(**SMALL, size_conditioned=True, time_conditioned=True).eval()
    report = export_network(conditioned, tmp_path / "gdss_conditioned.onnx")
    assert report.max_abs_err <= 1e-4 or report.max_rel_err <= 1e-4, report


def test_size_buckets_group_graphs_and_compact_trims_padding_without_changing_the_loss():
    """Grid graphs grouped into size ranges; ``compact`` trims a batch to its largest graph,
    and with the same noise the per-graph loss of the trimmed batch equals the padded one's."""
    from diffusekit_gdss.data import size_groups

    sizes = torch.tensor([9, 30, 12, 12, 20, 25, 16, 30])
    g = size_groups(sizes, 3)
    assert g.tolist() == [0, 2, 0, 0, 1, 1, 1, 2]  # ordered by size, one size never split
    assert size_groups(sizes, 1) is None
    ex = dk.create("dataset", {"name": "grid", "side_min": 3, "side_max": 7, "size_buckets": 3})
    n = ex.cond.sum(1)
    for k in ex.groups.unique():  # groups are contiguous size ranges
        inside, outside = n[ex.groups == k], n[ex.groups > k]
        assert outside.numel() == 0 or float(inside.max()) < float(outside.min())
    cfg = dk.create("recipe", "gdss-grid")
    cfg["network"].update(max_nodes=36, nhid=8, adim=8, c_hid=4, c_final=2, layers=2)
    cfg["process"].update(max_nodes=36, node_counts=None)
    pipe = dk.Pipeline.from_config({k: cfg[k] for k in ("process", "parameterization", "network", "sampler")})
    small = ex.index(torch.nonzero(ex.groups == 0).flatten())
    x0, flags = pipe.process.compact(small.x, small.cond)
    k = int(small.cond.sum(1).max())
    assert x0["adj"].shape[1:] == (k, k) and x0["x"].shape[1:] == (k, 5) and flags.shape[1] == k < 36
    assert torch.equal(x0["adj"], small.x["adj"][:, :k, :k]) and float(small.x["adj"][:, k:].abs().sum()) == 0
    assert pipe.process.compact(ex.x, None) == (ex.x, None)
    gap = torch.zeros(2, 36)
    gap[0, :4], gap[1, [0, 9]] = 1, 1  # flags need not be a prefix: nothing flagged is cut
    assert pipe.process.compact({"adj": torch.zeros(2, 36, 36), "x": torch.zeros(2, 36, 5)}, gap)[1].shape == (2, 10)
    t = torch.full((len(flags),), 0.4)
    gen = torch.Generator().manual_seed(0)
    xt = {}  # x_t of the padded batch (noise masked to the real nodes); its crop is the trimmed x_t
    for name, comp in pipe.process.components.items():
        a, _, c = comp.coefficients(t)
        eps = comp.noise_like(small.x[name], gen, small.cond)
        xt[name] = a.view(-1, 1, 1) * small.x[name] + c.view(-1, 1, 1) * eps
    cropped = {"adj": xt["adj"][:, :k, :k], "x": xt["x"][:, :k]}
    with torch.no_grad():
        outs = [pipe.network(xt, t, small.cond), pipe.network(cropped, t, flags)]
    per_graph = [sum(((o[name] - s[name]) ** 2).flatten(1).sum(1) for name in ("adj", "x"))
                 for o, s in zip(outs, (small.x, x0))]
    assert torch.allclose(per_graph[0], per_graph[1], rtol=1e-4, atol=1e-4)
    res = dk.train(pipe, ex, steps=4, batch_size=4, progress=False)
    assert len(res.losses) == 4 and all(torch.isfinite(torch.tensor(res.losses)))


def test_sample_by_size_samples_each_graph_at_its_own_width(tiny_run):
    from diffusekit_gdss import sample_by_size

    pipe = dk.Pipeline.load(tiny_run)
    flags = pipe.process.sample_cond(6, [torch.Generator().manual_seed(s) for s in range(6)])
    narrow = pipe.process.prior(2, pipe.sample_shape, cond=flags[:2, :13])
    assert narrow["adj"].shape == (2, 13, 13) and narrow["x"].shape == (2, 13, 10)
    graphs = sample_by_size(pipe, 6, range(6))
    assert [g.number_of_nodes() for g in graphs] == flags.sum(1).int().tolist()
    again = sample_by_size(pipe, 6, range(6))
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(graphs, again))
    with pytest.raises(ValueError, match="one seed per graph"):
        sample_by_size(pipe, 3, [0, 1])
