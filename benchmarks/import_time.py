"""Import and plugin-loading cost of diffusekit. Prints a table (median of fresh processes).

    python benchmarks/import_time.py [--repeats 7]

Measured in fresh interpreters, each:
  * ``import torch`` alone;
  * ``import diffusekit`` on top of an already imported torch (target < 0.2 s);
  * the first registry access, ``dk.registry()``, which scans the ``diffusekit`` entry points and
    imports / registers every installed plugin (target < 0.5 s), with the per-plugin split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROBE = r"""
import json, time
c0, t0 = time.process_time(), time.perf_counter()
import torch
c1, t1 = time.process_time(), time.perf_counter()
import diffusekit as dk
c2, t2 = time.process_time(), time.perf_counter()
from diffusekit.plugins import get_manager
m = get_manager()
import importlib.metadata as md
c3, t3 = time.process_time(), time.perf_counter()
eps = list(md.entry_points(group="diffusekit"))
c4, t4 = time.process_time(), time.perf_counter()
reg = dk.registry()
c5, t5 = time.process_time(), time.perf_counter()
n = sum(len(reg.names(k)) for k in ("process", "parameterization", "sampler", "schedule", "guidance",
        "conditioner", "network", "dataset", "metric", "exporter", "recipe", "command"))
print(json.dumps({"torch": t1 - t0, "diffusekit": t2 - t1, "scan": t4 - t3, "registry": t5 - t3,
                  "cpu_torch": c1 - c0, "cpu_diffusekit": c2 - c1, "cpu_scan": c4 - c3, "cpu_registry": c5 - c3,
                  "plugins": len(m.infos), "loaded": sum(i.status == "loaded" for i in m.infos.values()),
                  "components": n}))
"""

PER_PLUGIN = r"""
import json, time, importlib, sys
import torch, diffusekit
import importlib.metadata as md
out = {}
for ep in sorted(md.entry_points(group="diffusekit"), key=lambda e: e.name):
    t = time.perf_counter()
    try:
        ep.load()
    except Exception:
        pass
    out[ep.name] = time.perf_counter() - t
print(json.dumps(out))
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    runs = [_run(PROBE) for _ in range(args.repeats)]
    keys = ("torch", "diffusekit", "scan", "registry")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    lo = {k: min(r[k] for r in runs) for k in med}
    cpu = {k: statistics.median(r["cpu_" + k] for r in runs) for k in keys}
    last = runs[-1]
    print(f"fresh processes: {args.repeats}; plugins discovered {last['plugins']}, loaded {last['loaded']}, "
          f"components {last['components']}")
    print()
    print("| step | wall median (s) | wall best (s) | CPU median (s) | target |")
    print("|---|---|---|---|---|")
    rows = [("import torch", "torch", ""), ("import diffusekit (after torch)", "diffusekit", "< 0.2"),
            ("entry-point scan (importlib.metadata)", "scan", ""),
            ("first registry access: scan + load all plugins", "registry", "< 0.5")]
    for label, k, target in rows:
        print(f"| {label} | {med[k]:.4f} | {lo[k]:.4f} | {cpu[k]:.4f} | {target} |")
    per = [_run(PER_PLUGIN) for _ in range(3)]
    print()
    print("| plugin (import of its entry point, first in process order) | median (s) |")
    print("|---|---|")
    for name in per[0]:
        print(f"| {name} | {statistics.median(p[name] for p in per):.3f} |")


if __name__ == "__main__":
    main()
