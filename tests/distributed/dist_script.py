"""Run by tests/distributed/test_distributed.py under ``torchrun --nproc-per-node W`` (gloo, CPU).

``dist_script.py OUT JOB[,JOB...]``; jobs:

* ``cases``: every case of ``dist_cases.cases()`` into ``OUT/cases/<case>``;
* ``partial``: the ``gauss-euler-maruyama`` case into ``OUT/resume`` with ``stop_after_shards=1``
  (each rank draws one shard, as if killed afterwards; no manifest);
* ``resume``: the same case into ``OUT/resume`` again (reuses the complete shards);
* ``metrics``: ``dk.distributed.evaluate`` of MMD and of two per-item metrics on
  ``dist_cases.metric_data()``; rank 0 writes ``OUT/metrics.json``.

Rank 0 writes ``OUT/report-<job>.json`` (world size and what each run drew / reused)."""

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import diffusekit as dk  # noqa: E402
from dist_cases import SEED, abs_error, cases, metric_data  # noqa: E402

torch.set_num_threads(1)
warnings.simplefilter("ignore", UserWarning)  # batch-coupling notes of the coupled cases
out, jobs = sys.argv[1], sys.argv[2].split(",")
dist = dk.distributed
assert dist.init() == (int(os.environ["WORLD_SIZE"]) > 1)
world = dist.world_size()
assert world == int(os.environ["WORLD_SIZE"]) and dist.rank() == int(os.environ["RANK"])
report = {}


def run(case, target, **kw):
    make, spec, n, batch = cases()[case]
    r = dist.sample(make(spec), n, target, batch_size=batch, seed=SEED, **kw)
    return {"drawn": r.drawn, "skipped": r.skipped, "complete": r.complete, "world": r.world_size}


for job in jobs:
    if job == "cases":
        for case in cases():
            report[case] = run(case, os.path.join(out, "cases", case))
    elif job in ("partial", "resume"):
        report[job] = run("gauss-euler-maruyama", os.path.join(out, "resume"),
                          stop_after_shards=1 if job == "partial" else None)
    elif job == "metrics":
        d = metric_data()
        res = {"mmd": dist.evaluate("mmd", d["x"], d["y"]),
               "abs_error": dist.evaluate(abs_error, d["est"], d["ref"], bins=(0.0, 2.0, 8)),
               "si-sdr": dist.evaluate("si-sdr", d["est"], d["ref"])}
        if dist.is_main():
            with open(os.path.join(out, "metrics.json"), "w") as f:
                json.dump(res, f)
    else:
        raise SystemExit(f"unknown job {job!r}")
    if dist.is_main():
        with open(os.path.join(out, f"report-{job}.json"), "w") as f:
            json.dump({"world": world, **report}, f)
    report = {}
dist.barrier()
if dist.is_initialized():
    torch.distributed.destroy_process_group()
