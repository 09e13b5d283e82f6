"""Train and evaluate the SGMSE models on the synthetic espeak-ng corpus (CPU-sized).

    # everything: two training lanes in parallel, one core each, logs + load average in RUNS
    python examples/sgmse_train.py all --runs runs/sgmse             # about 75 minutes, resumable
    # or one model at a time (the StoRM score model needs the predictive run first)
    python examples/sgmse_train.py train --model predictive --steps 2000 --runs runs/sgmse
    python examples/sgmse_train.py train --model storm --steps 7500 --runs runs/sgmse --resume
    # PESQ / ESTOI / SI-SDR on held-out pairs (unseen texts and voices), JSON + spectrograms
    python examples/sgmse_train.py eval --runs runs/sgmse --n 40 --snr 0 --out /tmp/sgmse_eval
    # SI-SDR of intermediate checkpoints (learning curves) and against the number of steps
    python examples/sgmse_train.py curve --runs runs/sgmse --out /tmp/sgmse_curve
    python examples/sgmse_train.py nfe --runs runs/sgmse --out /tmp/sgmse_nfe

Training writes checkpoints every ``--checkpoint-every`` steps (all kept, for the learning
curves); ``--resume`` continues an interrupted run exactly. ``--minutes`` instead of
``--steps`` turns a wall-clock budget into a step count by timing a few steps first. The
training crops are built once and cached on disk (``DIFFUSEKIT_CACHE``). Needs the ``audio``
extra and espeak-ng.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import diffusekit as dk
from diffusekit_sgmse.data import corpus, spectrogram_dataset
from diffusekit_sgmse.enhance import enhance_spec
from diffusekit_sgmse.metrics import all_metrics
from diffusekit_sgmse.transforms import SpecTransform

NET = {"name": "ncsnpp", "preset": "custom", "nf": 8, "ch_mult": [1, 2, 4, 8]}
MODELS = {
    "sgmse": dict(process={"name": "ouve"}, parameterization="sgmse-score",
                  sampler={"name": "sgmse-pc", "steps": 30, "snr": 0.5}),
    "sb": dict(process={"name": "sb"}, parameterization="sgmse-x0", sampler={"name": "sb-ode", "steps": 50}),
    "predictive": dict(process={"name": "ouve"}, parameterization="predictive", sampler="one-step"),
    "storm": dict(process={"name": "ouve"}, parameterization="sgmse-score",
                  sampler={"name": "storm", "steps": 50, "snr": 0.5}),
}


def build(model: str) -> dk.Pipeline:
    net = dict(NET, cond_channels=2) if model == "storm" else NET
    return dk.Pipeline.from_config({**MODELS[model], "network": net})


@torch.no_grad()
def predict_in_batches(pipe, Y: torch.Tensor, bs: int = 16) -> torch.Tensor:
    return torch.cat([pipe.sample(y.shape[0], cond=y, x_init=y) for y in Y.split(bs)])


def training_data(args) -> dk.Example:
    return spectrogram_dataset("train", n=args.pairs, frames=args.frames, crops_per_pair=args.crops, seed=0)


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    out = runs / args.model
    if (out / "train_info.json").exists():
        print(f"{args.model}: finished earlier ({out / 'train_info.json'})", flush=True)
        return
    data = training_data(args)
    pipe = build(args.model)
    if args.model == "storm":
        pred = dk.Pipeline.load(runs / "predictive")
        yhat = predict_in_batches(pred, data.cond)
        data = dk.Example(data.x, torch.stack([data.cond, yhat], 1))
    steps = args.steps
    if steps is None:  # time a few steps to turn the wall-clock budget into a step count
        opt = torch.optim.SGD(pipe.parameters(), lr=0.0)
        for i in range(4):  # the first step pays one-off costs: time the last three
            if i == 1:
                t0 = time.perf_counter()
            idx = torch.randint(len(data), (args.batch,))
            loss = pipe.loss(data.x[idx], data.cond[idx])
            opt.zero_grad()
            loss.backward()
        per_step = (time.perf_counter() - t0) / 3 * args.contention
        steps = max(10, int(args.minutes * 60 / per_step))
    print(f"{args.model}: {sum(p.numel() for p in pipe.parameters()) / 1e6:.2f}M params, "
          f"{len(data)} crops, {steps} steps, load average {os.getloadavg()[0]:.2f}", flush=True)
    start = time.perf_counter()
    res = dk.train(pipe, data, steps=steps, batch_size=args.batch, lr=args.lr, ema=args.ema, warmup=50,
                   out_dir=out, log_every=100, checkpoint_every=args.checkpoint_every,
                   keep_checkpoints=10_000, resume=args.resume, progress=False)
    minutes = (time.perf_counter() - start) / 60
    if args.model == "storm":
        pred.save(out / "predictive")
    info = {"model": args.model, "steps": steps, "minutes_this_session": minutes, "final_loss": res.final_loss,
            "resumed_at": res.resumed_from, "steps_per_s": (steps - res.resumed_from) / (minutes * 60),
            "params_M": sum(p.numel() for p in pipe.parameters()) / 1e6, "batch": args.batch,
            "frames": args.frames, "pairs": args.pairs, "crops": len(data), "threads": args.threads,
            "lr": args.lr, "ema": args.ema, "load_average_at_end": os.getloadavg()}
    (out / "train_info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)


#: the two training lanes of ``all``: (model, steps) in order; StoRM needs the predictive run
LANES = ([("predictive", 2000), ("storm", 7500)], [("sgmse", 7500), ("sb", 3000)])


def cmd_all(args) -> None:
    """Both lanes in parallel (one thread each), each model resumable; the load average is
    written to RUNS/load.log every 30 s while they run."""
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    training_data(args)  # build the crop cache once, before the lanes read it
    print(f"training data ready after {time.perf_counter() - t0:.0f} s", flush=True)
    common = ["--runs", str(runs), "--pairs", str(args.pairs), "--crops", str(args.crops), "--frames",
              str(args.frames), "--batch", str(args.batch), "--lr", str(args.lr), "--ema", str(args.ema),
              "--checkpoint-every", str(args.checkpoint_every), "--resume"]
    scripts = []
    for lane in LANES:
        cmds = [" ".join([sys.executable, __file__, "train", "--model", m, "--steps", str(n)] + common)
                for m, n in lane]
        scripts.append(" && ".join(cmds))
    logs = [open(runs / f"lane{i}.log", "a") for i in range(len(scripts))]
    procs = [subprocess.Popen(["bash", "-c", s], stdout=f, stderr=subprocess.STDOUT, env={**os.environ,
             "OMP_NUM_THREADS": "1"}) for s, f in zip(scripts, logs)]
    with open(runs / "load.log", "a") as load:
        while any(p.poll() is None for p in procs):
            load.write(f"{time.strftime('%H:%M:%S')} {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
            load.flush()
            time.sleep(30)
    print(f"lanes finished with {[p.returncode for p in procs]} after {(time.perf_counter() - t0) / 60:.1f} min",
          flush=True)
    if any(p.returncode for p in procs):
        raise SystemExit(1)


SYSTEMS = {  # name -> (run, sampler override or None: the run's own)
    "predictive (MSE)": ("predictive", None),
    "SGMSE+ PC N=15 (30 NFE)": ("sgmse", {"name": "sgmse-pc", "steps": 15}),
    "SGMSE+ PC N=30 (60 NFE)": ("sgmse", None),
    "SGMSE+ ODE Euler (30 NFE)": ("sgmse", {"name": "sgmse-ode", "steps": 30}),
    "StoRM PC N=15 (31 NFE)": ("storm", {"name": "storm", "steps": 15, "snr": 0.5}),
    "StoRM PC N=50 (101 NFE)": ("storm", None),
    "SB ODE N=10 (10 NFE)": ("sb", {"name": "sb-ode", "steps": 10}),
    "SB ODE N=50 (50 NFE)": ("sb", None),
    "SB SDE N=50 (50 NFE)": ("sb", {"name": "sb-sde", "steps": 50}),
}


def load_runs(runs: Path) -> dict:
    pipes = {}
    for name in ("predictive", "sgmse", "storm", "sb"):
        if (runs / name / "config.json").exists():
            pipes[name] = dk.Pipeline.load(runs / name)
    return pipes


@torch.no_grad()
def si_sdr_of(pipe, pairs, seed: int, predictive=None, sampler=None) -> list[float]:
    """SI-SDR (dB) of each enhanced pair (per-pair generator seed + k)."""
    from diffusekit_sgmse.metrics import si_sdr

    tf = SpecTransform()
    out = []
    for k, p in enumerate(pairs):
        clean, noisy = torch.from_numpy(p.clean), torch.from_numpy(p.noisy)
        Y, _, norm, L = tf.analyse(noisy[None], clean[None])
        Xh = enhance_spec(pipe, Y, [torch.Generator().manual_seed(seed + k)], predictive, sampler)
        out.append(float(si_sdr(tf.synthesise(Xh, norm, L)[0], clean)))
    return out


#: the reverse-step counts of the ``nfe`` sweep, per run: (sampler name, extra config, steps list)
SWEEPS = {
    "sgmse": [("sgmse-pc", {}, [3, 5, 10, 15, 30]), ("sgmse-ode", {}, [10, 30])],
    "storm": [("storm", {}, [3, 5, 10, 15, 30])],
    "sb": [("sb-ode", {}, [1, 2, 5, 10, 20, 50]), ("sb-sde", {}, [5, 10, 20, 50])],
}


def cmd_nfe(args) -> None:
    """SI-SDR against the number of reverse steps for each system, on ``--n`` validation pairs
    (test speakers and texts, another seed than the evaluation's), JSON + a plot."""
    torch.set_num_threads(args.threads)
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = corpus("test", n=args.n, snr_min=args.snr, snr_max=args.snr, seed=args.seed)
    pipes = load_runs(runs)
    res = json.loads((out / "nfe.json").read_text()) if (out / "nfe.json").exists() else {}
    noisy = _noisy_si_sdr(pairs)
    res["noisy input"] = {"0": sum(noisy) / len(noisy)}
    for run in args.only or list(SWEEPS):
        if run not in pipes:
            continue
        pred = pipes.get("predictive") if run == "storm" else None
        for name, extra, steps_list in SWEEPS[run]:
            curve = res.setdefault(f"{run} {name}", {})
            for n in steps_list:
                if str(n) in curve:
                    continue
                sampler = {"name": name, "steps": n, **extra}
                t0 = time.perf_counter()
                vals = si_sdr_of(pipes[run], pairs, args.seed, pred, sampler)
                curve[str(n)] = sum(vals) / len(vals)
                res.setdefault("_nfe", {})[f"{run} {name} {n}"] = pipes[run].last_nfe
                print(f"{run} {name} N={n} NFE={pipes[run].last_nfe}: SI-SDR {curve[str(n)]:.2f} dB "
                      f"({time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f})", flush=True)
                (out / "nfe.json").write_text(json.dumps(res, indent=2))
    if "predictive" in pipes:
        vals = si_sdr_of(pipes["predictive"], pairs, args.seed)
        res["predictive"] = {"1": sum(vals) / len(vals)}
    (out / "nfe.json").write_text(json.dumps(res, indent=2))
    _plot_curves(res, "reverse steps N", f"SI-SDR against the number of reverse steps ({args.n} pairs, "
                 f"{args.snr:g} dB input)", args.png, flat=("noisy input", "predictive"))


def _noisy_si_sdr(pairs) -> list[float]:
    from diffusekit_sgmse.metrics import si_sdr

    return [float(si_sdr(torch.from_numpy(p.noisy), torch.from_numpy(p.clean))) for p in pairs]


def _plot_curves(res: dict, xlabel: str, title: str, png: str, flat=()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    xmax = max((int(k) for name, c in res.items() if not name.startswith("_") and name not in flat for k in c),
               default=1)
    for name, curve in res.items():
        if name.startswith("_") or not curve:
            continue
        if name in flat:
            ax.axhline(next(iter(curve.values())), ls="--", lw=1, color="gray" if name == "noisy input" else "k",
                       label=name)
            continue
        xs = sorted(int(k) for k in curve)
        ax.plot(xs, [curve[str(x)] for x in xs], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlim(right=xmax * 1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SI-SDR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from diffusekit.files import atomic_write

    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    print(f"wrote {png}")


#: the sampler each run's learning curve uses (cheap, fixed)
CURVE_SAMPLERS = {"predictive": None, "sgmse": {"name": "sgmse-pc", "steps": 15},
                  "storm": {"name": "storm", "steps": 15}, "sb": {"name": "sb-ode", "steps": 10}}


def cmd_curve(args) -> None:
    """SI-SDR of the EMA weights of intermediate checkpoints (learning curves) on ``--n``
    validation pairs, JSON + a plot."""
    from diffusekit.train import checkpoints, load_checkpoint_weights

    torch.set_num_threads(args.threads)
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = corpus("test", n=args.n, snr_min=args.snr, snr_max=args.snr, seed=args.seed)
    res = json.loads((out / "curve.json").read_text()) if (out / "curve.json").exists() else {}
    noisy = _noisy_si_sdr(pairs)
    res["noisy input"] = {"0": sum(noisy) / len(noisy)}
    pred = dk.Pipeline.load(runs / "predictive") if (runs / "predictive" / "config.json").exists() else None
    for run in args.only or list(CURVE_SAMPLERS):
        if not (runs / run / "config.json").exists():
            continue
        pipe = dk.Pipeline.load(runs / run)
        found = checkpoints(runs / run)
        chosen = [p for p in found if int(p.name[5:]) in args.steps] or found
        curve = res.setdefault(run, {})
        for ck in chosen:
            step = load_checkpoint_weights(ck, pipe)
            if str(step) in curve:
                continue
            vals = si_sdr_of(pipe, pairs, args.seed, pred if run == "storm" else None, CURVE_SAMPLERS[run])
            curve[str(step)] = sum(vals) / len(vals)
            print(f"{run} step {step}: SI-SDR {curve[str(step)]:.2f} dB (load {os.getloadavg()[0]:.2f})", flush=True)
            (out / "curve.json").write_text(json.dumps(res, indent=2))
    _plot_curves(res, "training step", f"Learning curves, EMA weights ({args.n} pairs, "
                 f"{args.snr:g} dB)", args.png, flat=("noisy input",))


def write_results(out: Path, results: dict, pairs: list, specs: dict) -> dict:
    summary = {}
    for s, rows in results.items():
        if not rows:
            continue
        summary[s] = {key: sum(r[key] for r in rows) / len(rows) for key in ("pesq", "estoi", "si_sdr")}
        if "nfe" in rows[0]:
            summary[s]["nfe"] = rows[0]["nfe"]
            summary[s]["seconds"] = sum(r["seconds"] for r in rows) / len(rows)
    (out / "results.json").write_text(json.dumps({"summary": summary, "rows": results,
                                                  "pairs": [(p.text, p.voice, p.noise, p.snr_db) for p in pairs]},
                                                 indent=2))
    torch.save({k: v.clone() for k, v in specs.items()}, out / "specs.pt")
    return summary


@torch.no_grad()
def cmd_eval(args) -> None:
    torch.set_num_threads(args.threads)
    import soundfile as sf

    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tf = SpecTransform()
    pairs = corpus("test", n=args.n, snr_min=args.snr, snr_max=args.snr, seed=args.seed)
    pipes = load_runs(runs)
    results: dict[str, list[dict]] = {"noisy input": []}
    specs = {}
    for k, p in enumerate(pairs):
        clean, noisy = torch.from_numpy(p.clean), torch.from_numpy(p.noisy)
        results["noisy input"].append({**all_metrics(noisy, clean), "noise": p.noise})
        Y, X, norm, L = tf.analyse(noisy[None], clean[None])
        if k == args.example:
            specs["clean"], specs["noisy"] = X[0], Y[0]
            sf.write(str(out / "clean.wav"), p.clean, 16_000)
            sf.write(str(out / "noisy.wav"), p.noisy, 16_000)
        for sysname, (run, sampler) in SYSTEMS.items():
            if run not in pipes or (args.only and run not in args.only):
                continue
            if args.exclude and any(e in sysname for e in args.exclude):
                continue
            if args.systems and not any(e in sysname for e in args.systems):
                continue
            pipe = pipes[run]
            predictive = pipes.get("predictive") if run == "storm" else None
            t0 = time.perf_counter()
            Xh = enhance_spec(pipe, Y, [torch.Generator().manual_seed(args.seed + k)], predictive, sampler)
            secs = time.perf_counter() - t0
            est = tf.synthesise(Xh, norm, L)[0]
            m = {**all_metrics(est, clean), "noise": p.noise, "nfe": pipe.last_nfe, "seconds": secs}
            results.setdefault(sysname, []).append(m)
            if k == args.example:
                specs[sysname] = Xh[0]
                sf.write(str(out / (run + ".wav")), est.numpy(), 16_000)
        print(k, p.noise, {s: round(v[-1]["si_sdr"], 2) for s, v in results.items() if v}, flush=True)
        summary = write_results(out, results, pairs[:k + 1], specs)  # after every pair: partial runs count
    print(json.dumps(summary, indent=2))


def cmd_plot(args) -> None:
    """Log-magnitude spectrograms of the example utterance (clean, noisy, each system)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {}
    for d in args.eval:
        specs.update(torch.load(Path(d) / "specs.pt", weights_only=True))
    order = ["clean", "noisy"] + [k for k in specs if k not in ("clean", "noisy")]
    order = [k for k in order if k in specs and (not args.systems or k in ("clean", "noisy") or
                                                  any(s in k for s in args.systems))]
    tf = SpecTransform()
    cols = 2
    rows = -(-len(order) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(9, 2.1 * rows), squeeze=False)
    for ax, name in zip(axes.flat, order):
        mag = 20 * torch.log10(tf.decompress(specs[name]).abs() + 1e-5)
        ax.imshow(mag.numpy(), origin="lower", aspect="auto", vmin=-60, vmax=float(mag.max()), cmap="magma",
                  extent=(0, mag.shape[1] * tf.hop_length / 16000, 0, 8))
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.png, dpi=args.dpi)
    print(f"wrote {args.png}")


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student t)."""
    import statistics

    from scipy.stats import t as student_t

    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, float("nan")
    return m, float(student_t.ppf(0.975, n - 1)) * statistics.stdev(values) / n ** 0.5


def cmd_table(args) -> None:
    """Markdown tables over one or more eval dirs (same seed, so their pairs share a prefix):
    means with 95 % confidence intervals of PESQ / ESTOI / SI-SDR, and each system's SI-SDR gain
    over the noisy input on the same pairs (paired differences)."""
    rows: dict[str, list[dict]] = {}
    for d in args.evals:
        res = json.loads((Path(d) / "results.json").read_text())
        for name, rs in res["rows"].items():
            if len(rs) > len(rows.get(name, [])):
                rows[name] = rs
    noisy = rows["noisy input"]
    print("| system | NFE | pairs | PESQ (wb) | ESTOI | SI-SDR (dB) | SI-SDR gain (dB) | s / utterance |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        n = len(rs)
        cell = lambda key, r=rs, digits=2: "{:.{d}f} ± {:.{d}f}".format(*mean_ci([x[key] for x in r]), d=digits)
        gain = "{:+.2f} ± {:.2f}".format(*mean_ci([x["si_sdr"] - y["si_sdr"] for x, y in zip(rs, noisy[:n])]))
        nfe = rs[0].get("nfe", "-")
        secs = f"{sum(x['seconds'] for x in rs) / n:.1f}" if "seconds" in rs[0] else "-"
        print(f"| {name} | {nfe} | {n} | {cell('pesq')} | {cell('estoi', digits=3)} | {cell('si_sdr')} | "
              f"{gain} | {secs} |")
    kinds = sorted({r["noise"] for r in noisy})
    print("\n| system | " + " | ".join(f"SI-SDR {k}" for k in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for name, rs in rows.items():
        cells = []
        for k in kinds:
            v = [r["si_sdr"] for r in rs if r["noise"] == k]
            cells.append(f"{sum(v) / len(v):.1f} ({len(v)})" if v else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


def data_args(p) -> None:
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--checkpoint-every", type=int, default=500)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--runs", default="runs/sgmse")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: from --minutes)")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--contention", type=float, default=1.0,
                   help="expected slow-down of later steps vs. the timed ones (shared machines)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_train)
    data_args(p)
    p = sub.add_parser("all")
    p.add_argument("--runs", default="runs/sgmse")
    p.set_defaults(func=cmd_all)
    data_args(p)
    p = sub.add_parser("eval")
    p.add_argument("--runs", default="runs/sgmse")
    p.add_argument("--out", default="/tmp/sgmse_eval")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--snr", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--example", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="evaluate only these runs")
    p.add_argument("--exclude", nargs="*", default=None, help="skip systems whose name contains these")
    p.add_argument("--systems", nargs="*", default=None, help="evaluate only systems whose name contains these")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_eval)
    for name, func, png in (("nfe", cmd_nfe, "docs/img/sgmse_nfe.png"), ("curve", cmd_curve, "docs/img/sgmse_curve.png")):
        p = sub.add_parser(name)
        p.add_argument("--runs", default="runs/sgmse")
        p.add_argument("--out", default=f"/tmp/sgmse_{name}")
        p.add_argument("--n", type=int, default=4)
        p.add_argument("--snr", type=float, default=0.0)
        p.add_argument("--seed", type=int, default=1000, help="validation pairs: another seed than eval's 0")
        p.add_argument("--only", nargs="*", default=None, help="these runs only")
        p.add_argument("--steps", type=int, nargs="*", default=[500, 1000, 2000, 3000, 4000, 5000, 7500],
                       help="checkpoint steps (curve)")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--png", default=png)
        p.set_defaults(func=func)
    p = sub.add_parser("plot")
    p.add_argument("--eval", nargs="+", default=["/tmp/sgmse_eval"])
    p.add_argument("--png", default="docs/img/sgmse_spectrograms.png")
    p.add_argument("--systems", nargs="*", default=None, help="substrings of system names to show")
    p.add_argument("--dpi", type=int, default=80)
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("table")
    p.add_argument("evals", nargs="+", help="eval output directories (results.json)")
    p.set_defaults(func=cmd_table)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
