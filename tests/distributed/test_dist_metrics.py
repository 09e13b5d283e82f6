"""Metrics as partial sums (diffusekit.metrics) and dk.distributed.evaluate in one process; the
row-block decomposition is checked by splitting into shards by hand (the torchrun tests run it
over real ranks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from dist_cases import abs_error, metric_data

import diffusekit as dk
from diffusekit.metrics import MMD, PerItem
from diffusekit.testing import mmd

dist = dk.distributed


def combine(metric, samples, reference, world):
    """What evaluate computes over ``world`` ranks, with the reduction done here."""
    parts = [metric.partial(samples, reference, r, world) for r in range(world)]
    sums = {}
    for key in parts[0]:
        op = metric.reduce.get(key, "sum")
        stacked = torch.stack([p[key].to(torch.float64) for p in parts])
        sums[key] = {"sum": stacked.sum(0), "min": stacked.min(0).values, "max": stacked.max(0).values}[op]
    return metric.finalize(sums)


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_mmd_row_blocks_add_up_to_the_single_process_value(world):
    d = metric_data()
    m = dk.create("metric", "mmd")
    assert isinstance(m, MMD) and m.name == "mmd"
    want = mmd(d["x"], d["y"])
    assert math.isclose(combine(m, d["x"], d["y"], world)["value"], want, rel_tol=1e-12)
    small = MMD(chunk=5)  # several kernel blocks per rank
    assert math.isclose(combine(small, d["x"], d["y"], world)["value"], want, rel_tol=1e-12)
    assert math.isclose(dist.evaluate("mmd", d["x"], d["y"])["value"], want, rel_tol=1e-12)
    assert math.isclose(m(d["x"], d["y"]), want, rel_tol=1e-12)


@pytest.mark.parametrize("world", [1, 2, 3, 20])
def test_per_item_statistics_and_histogram(world):
    d = metric_data()
    values = np.array([abs_error(a, b) for a, b in zip(d["est"], d["ref"])])
    res = combine(PerItem(abs_error, bins=(1.0, 1.2, 4)), d["est"], d["ref"], world)
    assert res["count"] == 11 and res["nonfinite"] == 0
    assert math.isclose(res["mean"], values.mean(), rel_tol=1e-12)
    assert math.isclose(res["std"], values.std(ddof=1), rel_tol=1e-9)
    assert (res["min"], res["max"]) == (values.min(), values.max())
    counts, _ = np.histogram(values[(values >= 1.0) & (values <= 1.2)], bins=4, range=(1.0, 1.2))
    assert res["histogram"]["counts"] == counts.tolist()
    assert res["histogram"]["below"] == int((values < 1.0).sum()) and res["histogram"]["above"] == int((values > 1.2).sum())


def test_registered_per_item_metric_and_non_finite_values():
    d = metric_data()
    from diffusekit_sgmse.metrics import si_sdr

    res = dist.evaluate("si-sdr", d["est"], d["ref"])
    assert res["metric"] == "si-sdr"
    assert math.isclose(res["value"], float(np.mean([si_sdr(a, b) for a, b in zip(d["est"], d["ref"])])),
                        rel_tol=1e-12)
    res = dist.evaluate(lambda a, b: math.inf if float(a[0]) > 0 else 1.0, d["est"], d["ref"])
    assert res["nonfinite"] == int((d["est"][:, 0] > 0).sum()) and res["value"] == 1.0


def test_metric_errors_name_the_argument(isolated_registry):
    import diffusekit.builtins

    isolated_registry.load_module(diffusekit.builtins)
    isolated_registry.registry.register("metric", "set-level", lambda samples, reference: 0.0)
    x = torch.randn(6, 2)
    with pytest.raises(dk.ConfigError, match="plain set-level callable, which cannot be split") as exc:
        dist.evaluate("set-level", x, x)
    assert exc.value.loc == "metric"
    with pytest.raises(dk.ConfigError, match="mmd compares two sets: pass a reference set") as exc:
        dist.evaluate("mmd", x)
    assert exc.value.loc == "reference"
    with pytest.raises(dk.ConfigError, match="bins apply to per-item metrics") as exc:
        dist.evaluate("mmd", x, x, bins=(0, 1, 3))
    assert exc.value.loc == "bins"
    with pytest.raises(dk.ConfigError, match="every bandwidth must be > 0"):
        dist.evaluate({"name": "mmd", "bandwidths": [0.0]}, x, x)
    with pytest.raises(dk.ShapeError, match="6 samples but 5 reference items"):
        dist.evaluate(abs_error, x, x[:5])
    with pytest.raises(dk.ShapeError, match="2 features per item, the reference 3"):
        dist.evaluate("mmd", x, torch.randn(4, 3))
    with pytest.raises(dk.ConfigError, match="bins must be \\(lo, hi, count\\)") as exc:
        dist.evaluate(abs_error, x, x, bins=(1, 0, 3))
    assert exc.value.loc == "bins"
    with pytest.raises(dk.UnknownComponentError, match="unknown metric 'mmdd'; did you mean 'mmd'"):
        dist.evaluate("mmdd", x, x)
