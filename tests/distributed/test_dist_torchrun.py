"""torchrun with 1, 2 and 3 processes (gloo, CPU): the shards are the bytes of a single-process
run for every sampler case, a run stopped on 2 processes resumes on 3, and distributed metrics
equal the single-process values. Each launch costs a few seconds of process start-up, so all
cases run inside one launch per world size."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from dist_cases import SEED, abs_error, cases, metric_data, torchrun

import diffusekit as dk

dist = dk.distributed
SCRIPT = str(Path(__file__).with_name("dist_script.py"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One launch per world size; the 2-process launch also stops a run after one shard per
    rank, which the 3-process launch resumes."""
    root = tmp_path_factory.mktemp("torchrun")
    single = root / "single"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the batch-coupled cases say so
        for case, (make, spec, n, batch) in cases().items():
            dist.sample(make(spec), n, single / case, batch_size=batch, seed=SEED)
    out = {w: root / f"world{w}" for w in (1, 2, 3)}
    for w in out.values():
        w.mkdir()
    torchrun(1, SCRIPT, str(out[1]), "cases")
    torchrun(2, SCRIPT, str(out[2]), "cases,partial,metrics")
    (out[2] / "resume").rename(out[3] / "resume")  # the stopped run continues with 3 processes
    torchrun(3, SCRIPT, str(out[3]), "cases,resume,metrics")
    return single, out


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("samples-*.safetensors"))}


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_sampler_writes_the_single_process_bytes(runs, world):
    single, out = runs
    report = json.loads((out[world] / "report-cases.json").read_text())
    assert report["world"] == world
    names = sorted(cases())
    assert sorted(p.name for p in (out[world] / "cases").iterdir()) == names
    for case in names:
        got, want = out[world] / "cases" / case, single / case
        assert report[case]["complete"] and report[case]["drawn"] == len(shard_bytes(want)), case
        assert shard_bytes(got) == shard_bytes(want), case
        m_got, m_want = dist.read_manifest(got), dist.read_manifest(want)
        assert m_got["shards"] == m_want["shards"] and m_got["run_id"] == m_want["run_id"], case
        assert m_got["world_size"] == world


def test_a_run_stopped_on_2_processes_resumes_on_3(runs):
    single, out = runs
    partial = json.loads((out[2] / "report-partial.json").read_text())["partial"]
    assert partial == {"drawn": 2, "skipped": 0, "complete": False, "world": 2}  # shards 0 and 2
    resumed = json.loads((out[3] / "report-resume.json").read_text())["resume"]
    assert resumed == {"drawn": 2, "skipped": 2, "complete": True, "world": 3}
    assert shard_bytes(out[3] / "resume") == shard_bytes(single / "gauss-euler-maruyama")
    assert dist.read_manifest(out[3] / "resume")["world_size"] == 3


@pytest.mark.parametrize("world", [2, 3])
def test_distributed_metrics_equal_the_single_process_values(runs, world):
    _, out = runs
    got = json.loads((out[world] / "metrics.json").read_text())
    d = metric_data()
    want = {"mmd": dist.evaluate("mmd", d["x"], d["y"]),
            "abs_error": dist.evaluate(abs_error, d["est"], d["ref"], bins=(0.0, 2.0, 8)),
            "si-sdr": dist.evaluate("si-sdr", d["est"], d["ref"])}
    from diffusekit.testing import mmd

    assert math.isclose(want["mmd"]["value"], mmd(d["x"], d["y"]), rel_tol=1e-12)
    for name, w in want.items():
        g = got[name]
        assert set(g) == set(w), name
        for key, value in w.items():
            if isinstance(value, float):
                assert math.isclose(g[key], value, rel_tol=1e-12, abs_tol=1e-12), (name, key)
            elif key == "per_bandwidth":
                assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-14) for a, b in zip(g[key], value))
            else:
                assert g[key] == value, (name, key)
