"""ONNX / onnxruntime speed: per-call latency of eager PyTorch vs onnxruntime (CPU) for the
``mlp`` and the small ``unet`` at batch 1 and 64, and the whole-sampler ONNX graph (one Scan
node) vs the Python sampling loop.

    python benchmarks/onnx.py [--threads 1] [--repeats 50] [--out /tmp/onnx_bench]

Prints Markdown tables (median and p90 over ``--repeats`` calls after warm-up). Every graph is
verified at export (report.max_abs_err is printed next to the timings).
"""

from __future__ import annotations

import sys
from pathlib import Path

# this file is called onnx.py: keep its folder off sys.path so `import onnx` finds the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def timeit(fn, repeats: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return statistics.median(ts) * 1e3, ts[int(0.9 * (len(ts) - 1))] * 1e3


def network_table(out: Path, threads: int, repeats: int) -> list[str]:
    import diffusekit as dk
    from diffusekit_onnx.export_denoiser import export_network
    from diffusekit_onnx.runtime import OrtModule

    rows = ["| network | params | batch | input | PyTorch eager ms (p90) | onnxruntime ms (p90) | speed-up | "
            "max abs err |", "|---|---|---|---|---|---|---|---|"]
    for name in ("mlp", "unet"):
        if ("network", name) not in dk.registry():
            rows.append(f"| {name} | - | - | - | not registered | - | - | - |")
            continue
        torch.manual_seed(0)
        net = dk.create("network", name).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        report = export_network(net, out / f"{name}.onnx")
        ort = OrtModule(out / f"{name}.onnx", threads=threads)
        n_params = sum(p.numel() for p in net.parameters())
        for batch in (1, 64):
            x, t, cond = net.example_inputs(batch)
            args = (x, t) if cond is None else (x, t, cond)
            with torch.inference_mode():
                te, te90 = timeit(lambda: net(*args), repeats)
            to, to90 = timeit(lambda: ort.run(*args), repeats)
            rows.append(f"| {name} | {n_params / 1e6:.2f} M | {batch} | {tuple(x.shape[1:])} | {te:.3f} ({te90:.3f}) | "
                        f"{to:.3f} ({to90:.3f}) | {te / to:.2f}x | {report.max_abs_err:.1e} |")
    return rows


def sampler_table(out: Path, threads: int, repeats: int) -> list[str]:
    import diffusekit as dk
    from diffusekit_onnx.runtime import OrtModule

    rows = ["| sampler | steps (NFE) | batch | Python loop ms (p90) | ONNX Scan ms (p90) | ONNX unrolled ms (p90) | "
            "Scan speed-up | graph vs Python max rel err |", "|---|---|---|---|---|---|---|---|"]
    specs = [{"name": "heun", "steps": 6}, {"name": "dpm-solver++", "variant": "2M", "steps": 10},
             {"name": "ddim", "steps": 10}]
    reps = max(repeats // 5, 5)
    for spec in specs:
        if ("sampler", spec["name"]) not in dk.registry():
            rows.append(f"| {spec['name']} | - | - | not registered | - | - | - | - |")
            continue
        torch.manual_seed(0)
        pipe = dk.Pipeline.from_config({"process": {"name": "vp"}, "parameterization": "eps",
                                        "network": {"name": "mlp", "dim": 2, "hidden": 128, "depth": 3},
                                        "sampler": spec})
        sessions = {}
        for loop in ("scan", "unroll"):
            path = out / f"sampler_{spec['name']}_{loop}.onnx"
            dk.export(pipe, "onnx", path, mode="sampler", loop=loop)
            sessions[loop] = OrtModule(path, threads=threads)
        label = spec["name"] + (f" ({spec.get('method') or spec.get('variant')})" if len(spec) > 2 else "")
        for batch in (1, 64):
            x = torch.randn(batch, 2)
            tp, tp90 = timeit(lambda: pipe.sample(batch, x_init=x), reps)
            nfe = pipe.last_nfe
            ts, ts90 = timeit(lambda: sessions["scan"].run(x), reps)
            tu, tu90 = timeit(lambda: sessions["unroll"].run(x), reps)
            ref = pipe.sample(batch, x_init=x)
            err = float((sessions["scan"].run(x)[0] - ref).abs().max() / ref.abs().max())
            rows.append(f"| {label} | {spec['steps']} ({nfe}) | {batch} | {tp:.2f} ({tp90:.2f}) | {ts:.2f} ({ts90:.2f}) | "
                        f"{tu:.2f} ({tu90:.2f}) | {tp / ts:.1f}x | {err:.1e} |")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", default=None, help="where to write the .onnx files (default: a temp dir)")
    ap.add_argument("--skip-sampler", action="store_true")
    ap.add_argument("--skip-networks", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dk_onnx_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} thread(s), "
          f"CPUExecutionProvider, {args.repeats} repeats\n")
    if not args.skip_networks:
        print("\n".join(network_table(out, args.threads, args.repeats)))
    if not args.skip_sampler:
        print()
        print("\n".join(sampler_table(out, args.threads, args.repeats)))


if __name__ == "__main__":
    main()
