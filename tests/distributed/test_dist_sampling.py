"""dk.distributed in one process (no launcher): shards, manifest, resume, refusals, reader.

The multi-process runs (torchrun, 2 and 3 processes) are in test_dist_torchrun.py; they compare
their shards with the single-process runs checked here."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from dist_cases import BATCH, N, SEED, cases, gaussian_pipe, product_pipe

import diffusekit as dk
from diffusekit import state as st
from diffusekit.api import spec_of

dist = dk.distributed
CASES = cases()
#: samples interact within a batch: adaptive ODE step, batch-averaged Langevin norms, SVDD
COUPLED = ("gauss-ode", "gauss-pc-langevin-batchnorm", "gauss-svdd")


def shard_bytes(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("samples-*.safetensors"))}


def equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(st.leaf_list(a), st.leaf_list(b), strict=True))


# ---------------------------------------------------------------------------------------------
# process helpers and sharding
# ---------------------------------------------------------------------------------------------


def test_process_helpers_without_a_launcher():
    assert dist.init() is False and not dist.is_initialized()
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.is_main()) == (0, 1, 0, True)
    dist.barrier()
    t = torch.arange(3.0)
    assert dist.all_reduce(t, "max") is t
    assert dist.failed_ranks(False) == [] and dist.failed_ranks(True) == [0]
    with pytest.raises(ValueError, match="boom"), dist.propagate_errors("test"):
        raise ValueError("boom")
    with pytest.raises(dk.ConfigError, match="unknown reduction 'mean'") as exc:
        dist.all_reduce(t, "mean")
    assert exc.value.loc == "op"


@pytest.mark.parametrize("n", [0, 1, 4, 7, 10])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shard_range_is_a_contiguous_partition(n, world):
    ranges = [dist.shard_range(n, r, world) for r in range(world)]
    assert [i for r in ranges for i in r] == list(range(n))  # disjoint, contiguous, in rank order
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_range_names_the_bad_argument():
    with pytest.raises(dk.ConfigError, match="rank 3 is not below world size 3") as exc:
        dist.shard_range(5, 3, 3)
    assert exc.value.loc == "rank"
    with pytest.raises(dk.ConfigError, match="world must be an integer >= 1, got 0"):
        dist.shard_range(5, 0, 0)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "x.bin"
    dist.atomic_write_bytes(target, b"old")

    def failing(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        dist.atomic_write(target, failing)
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["x.bin"]


# ---------------------------------------------------------------------------------------------
# every sampler: shards equal per-sample-seeded batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_shards_hold_the_per_sample_seeded_draws(case, tmp_path, recwarn):
    make, spec, n, batch = CASES[case]
    pipe = make(spec)
    report = dist.sample(pipe, n, tmp_path, batch_size=batch, seed=SEED)
    assert report.complete and report.drawn == report.num_shards == -(-n // batch) and report.skipped == 0
    x = dist.load_samples(tmp_path)
    # shard k is the batch [k B, (k + 1) B) drawn with generators seed + i
    batches = [pipe.sample(min(n, s + batch) - s, generator=list(range(SEED + s, SEED + min(n, s + batch))))
               for s in range(0, n, batch)]
    assert equal(x, st.concat(batches))
    if report.manifest["batch_invariant"] and not case.startswith("product"):
        # exact oracles are row-wise: one batch of n gives the same bytes (the product case's
        # float32 matmuls are batch-invariant only up to round-off)
        assert equal(x, pipe.sample(n, generator=list(range(SEED, SEED + n))))
    coupled = pipe.sampler.couples_batch() or any(g.couples_batch for g in pipe.guidance)
    if case in COUPLED:
        assert coupled
    elif case.startswith(("gauss-ddim", "gauss-pc", "gauss-euler", "masked-")):
        assert not coupled
    assert report.manifest["batch_invariant"] is not coupled
    assert bool([w for w in recwarn.list if "depend on the batch partition" in str(w.message)]) is coupled


def test_manifest_records_what_was_run(tmp_path):
    make, spec, n, batch = CASES["gauss-euler-maruyama"]
    pipe = make(spec)
    report = dist.sample(pipe, n, tmp_path, batch_size=batch, seed=SEED)
    doc = json.loads((tmp_path / dist.MANIFEST_FILE).read_text())
    assert doc == report.manifest == dist.read_manifest(tmp_path)
    assert (doc["format"], doc["format_version"]) == (dist.SAMPLES_FORMAT, dist.SAMPLES_FORMAT_VERSION)
    assert (doc["n"], doc["batch_size"], doc["seed"], doc["num_shards"]) == (N, BATCH, SEED, 4)
    assert "seed + i" in doc["seeds"] and doc["world_size"] == 1
    assert doc["sampler"] == spec_of(pipe.sampler, "sampler") and doc["sampler"]["steps"] == spec["steps"]
    assert doc["pipeline"]["process"]["name"] == "vp"
    assert doc["pipeline"]["network"] == {"unregistered": "diffusekit.testing.oracles.MixtureOracle"}
    assert doc["state"] == {"shape": [2], "leaves": {"samples": {"dtype": "F32", "shape": [2]}}}
    assert set(doc["versions"]) >= {"python", "torch", "diffusekit"} and doc["nfe_per_batch"] == pipe.last_nfe
    assert len(doc["config_hash"]) == len(doc["weights_sha256"]) == len(doc["run_id"]) == 64
    assert [(s["file"], s["start"], s["stop"]) for s in doc["shards"]] == [
        ("samples-00000-of-00004.safetensors", 0, 2), ("samples-00001-of-00004.safetensors", 2, 4),
        ("samples-00002-of-00004.safetensors", 4, 6), ("samples-00003-of-00004.safetensors", 6, 7)]
    for s in doc["shards"]:
        assert s["sha256"] == hashlib.sha256((tmp_path / s["file"]).read_bytes()).hexdigest()


def test_dict_state_has_one_key_per_leaf(tmp_path):
    from safetensors.torch import load_file

    pipe = product_pipe({"name": "euler-maruyama", "steps": 3})
    dist.sample(pipe, 5, tmp_path, batch_size=2, seed=1)
    assert sorted(load_file(str(tmp_path / "samples-00002-of-00003.safetensors"))) == ["samples.a", "samples.b"]
    x = dist.load_samples(tmp_path)
    assert set(x) == {"a", "b"} and x["a"].shape == (5, 3) and x["b"].shape == (5, 2, 2)
    assert dist.read_manifest(tmp_path)["state"]["shape"] == {"a": [3], "b": [2, 2]}


class CondEcho(dk.Network):
    """x0 prediction = the condition: each sample must end at its own condition row."""

    sample_shape = (2,)

    def forward(self, x, t, cond=None):
        return cond.to(x.dtype).expand_as(x)


def test_condition_rows_follow_their_samples(tmp_path):
    pipe = dk.Pipeline(process="vp", network=CondEcho(), parameterization="x0", sampler={"name": "ddim", "steps": 3})
    cond = torch.arange(10.0).reshape(5, 2)
    dist.sample(pipe, 5, tmp_path, batch_size=2, cond=cond)
    x = dist.load_samples(tmp_path)
    assert equal(x, pipe.sample(5, cond=cond, generator=list(range(5))))
    assert torch.allclose(x, cond, atol=0.05)
    with pytest.raises(dk.ShapeError, match="give one condition per sample"):
        dist.sample(pipe, 6, tmp_path / "other", batch_size=2, cond=cond)
    # another condition is another run
    with pytest.raises(dk.ConfigError, match="condition with sha256"):
        dist.sample(pipe, 5, tmp_path, batch_size=2, cond=cond + 1)


# ---------------------------------------------------------------------------------------------
# resume and refusals
# ---------------------------------------------------------------------------------------------


def test_a_stopped_run_resumes_to_the_same_bytes(tmp_path):
    make, spec, n, batch = CASES["gauss-euler-maruyama"]
    full = tmp_path / "full"
    dist.sample(make(spec), n, full, batch_size=batch, seed=SEED)

    run = tmp_path / "run"
    first = dist.sample(make(spec), n, run, batch_size=batch, seed=SEED, stop_after_shards=1)
    assert not first.complete and first.manifest is None and (first.drawn, first.skipped) == (1, 0)
    assert sorted(os.listdir(run)) == ["samples-00000-of-00004.safetensors"]
    with pytest.raises(dk.IntegrityError, match="not a finished sample directory.*rerun"):
        dist.load_samples(run)
    (run / ".samples-00001-of-00004.123.tmp.safetensors").write_bytes(b"half a shard from a killed writer")

    second = dist.sample(make(spec), n, run, batch_size=batch, seed=SEED)
    assert second.complete and (second.drawn, second.skipped) == (3, 1)
    assert shard_bytes(run) == shard_bytes(full)
    assert second.manifest["shards"] == dist.read_manifest(full)["shards"]
    assert not list(run.glob(".*"))  # the stale temporary file was removed

    manifest = (run / dist.MANIFEST_FILE).read_bytes()
    third = dist.sample(make(spec), n, run, batch_size=batch, seed=SEED)
    assert (third.drawn, third.skipped) == (0, 4) and (run / dist.MANIFEST_FILE).read_bytes() == manifest


def test_a_damaged_shard_is_reported_and_redrawn(tmp_path):
    make, spec, n, batch = CASES["gauss-ddim"]
    dist.sample(make(spec), n, tmp_path, batch_size=batch, seed=SEED)
    good = shard_bytes(tmp_path)
    path = tmp_path / "samples-00001-of-00004.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(dk.IntegrityError, match="samples-00001-of-00004.safetensors: sha256 .* does not match"):
        dist.load_samples(tmp_path)
    report = dist.sample(make(spec), n, tmp_path, batch_size=batch, seed=SEED)
    assert (report.drawn, report.skipped) == (1, 3) and shard_bytes(tmp_path) == good
    path.unlink()
    with pytest.raises(dk.IntegrityError, match="listed in the manifest but missing"):
        dist.load_samples(tmp_path)


def test_a_directory_of_another_run_is_refused_naming_the_field(tmp_path):
    make, spec, n, batch = CASES["gauss-ddim"]
    pipe = make(spec)
    dist.sample(pipe, n, tmp_path, batch_size=batch, seed=SEED, stop_after_shards=1)  # no manifest yet
    with pytest.raises(dk.ConfigError, match=r"seed = 11, this run has 12\); pass --seed 11") as exc:
        dist.sample(pipe, n, tmp_path, batch_size=batch, seed=12)
    assert exc.value.loc == "out"
    dist.sample(pipe, n, tmp_path, batch_size=batch, seed=SEED)
    with pytest.raises(dk.ConfigError, match="manifest.json was drawn with batch_size = 2, this run has 3"):
        dist.sample(pipe, n, tmp_path, batch_size=3, seed=SEED)
    with pytest.raises(dk.ConfigError, match="n = 7, this run has 8"):
        dist.sample(pipe, 8, tmp_path, batch_size=batch, seed=SEED)
    with pytest.raises(dk.ConfigError, match="pipeline configuration .* --sampler"):
        dist.sample(pipe, n, tmp_path, batch_size=batch, seed=SEED, sampler={"name": "ddim", "steps": 5})
    other = gaussian_pipe(spec)
    other.network.register_parameter("w", torch.nn.Parameter(torch.zeros(1)))  # same config, other weights
    with pytest.raises(dk.ConfigError, match="weights with sha256"):
        dist.sample(other, n, tmp_path, batch_size=batch, seed=SEED)
    afile = tmp_path / "samples-00000-of-00004.safetensors"
    with pytest.raises(dk.ConfigError, match="is a file; sharded sampling writes a directory") as exc:
        dist.sample(pipe, n, afile, batch_size=batch)
    assert exc.value.loc == "out"
    for kw, loc in [({"n": 0}, "n"), ({"batch_size": 0}, "batch_size"), ({"seed": -1}, "seed")]:
        args = {"n": n, "batch_size": batch, "seed": 0, **kw}
        with pytest.raises(dk.ConfigError, match=f"{loc} must be an integer") as exc:
            dist.sample(pipe, args["n"], tmp_path / "x", batch_size=args["batch_size"], seed=args["seed"])
        assert exc.value.loc == loc
