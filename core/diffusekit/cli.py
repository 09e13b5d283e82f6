"""The ``diffusekit`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_plugins(args) -> int:
    import diffusekit as dk

    infos = dk.plugins()
    if args.json:
        _print_json(infos)
        return 0
    wn = max([len(p["name"]) for p in infos] + [6])
    wd = max([len(p["distribution"] or "-") for p in infos] + [12])
    for p in infos:
        status = p["status"] + (f": {p['error']}" if p["error"] else "")
        print(f"{p['name']:<{wn}}  {p['distribution'] or '-':<{wd}}  {p['version'] or '-':<8}  {status}")
        for kind, names in p["components"].items():
            print(f"    {kind:<17} {', '.join(names)}")
        for o in p.get("overrides", []):
            print(f"    overrides {o['kind']} {o['name']!r} of plugin {o['replaced']!r} (DIFFUSEKIT_ALLOW_OVERRIDES)")
    return 0


def cmd_components(args) -> int:
    import diffusekit as dk

    reg = dk.registry()
    specs = reg.specs(args.kind) if args.kind else reg.specs()
    if args.json:
        _print_json([s.summary for s in specs])
        return 0
    for s in specs:
        print(f"{s.kind:<17} {s.name:<20} {s.provenance.plugin:<12} {s.description}")
    return 0


def cmd_info(args) -> int:
    import diffusekit as dk

    _print_json(dk.info(args.name))
    return 0


def cmd_schema(args) -> int:
    import diffusekit as dk

    _print_json(dk.schema(args.kind, args.name))
    return 0


def _load_config(path: str) -> dict:
    from pathlib import Path

    from .errors import ConfigError

    p = Path(path)
    if not p.exists():
        import diffusekit as dk

        reg = dk.registry()
        if ("recipe", path) in reg:
            return dk.create("recipe", path)
        raise ConfigError(f"config file {path!r} not found and no recipe of that name; recipes: "
                          f"{reg.names('recipe')}", loc="config")
    return json.loads(p.read_text())


def cmd_train(args) -> int:
    import diffusekit as dk

    from .errors import ConfigError
    from .files import check_output_dir

    check_output_dir(args.out, loc="--out")  # before any work: a finished run is never discarded
    cfg = _load_config(args.config)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{args.config}: expected a JSON object with pipeline keys plus 'data' and 'train', got "
                          f"{type(cfg).__name__}", loc="config")
    train_cfg = dict(cfg.pop("train", None) or {})
    data = cfg.pop("data", None)
    if args.data:
        data = parse_spec(args.data)
    if data is None:
        raise ConfigError("the config needs a 'data' entry (a registered dataset name or spec) or pass --data",
                          loc="data")
    for key in ("steps", "batch_size", "lr"):
        val = getattr(args, key)
        if val is not None:
            train_cfg[key] = val
    if args.checkpoint_every is not None:
        train_cfg["checkpoint_every"] = args.checkpoint_every
    pipe = dk.Pipeline.from_config(cfg)
    import inspect

    from .train import train as train_fn

    accepted = set(inspect.signature(train_fn).parameters) - {"pipe", "data", "out_dir", "resume", "progress"}
    unknown = sorted(set(train_cfg) - accepted)
    if unknown:
        raise ConfigError(f"unknown 'train' keys {unknown}; accepted: {sorted(accepted)}", loc=f"train.{unknown[0]}")
    res = dk.train(pipe, data, out_dir=args.out, progress=not args.quiet, resume=args.resume, **train_cfg)
    print(f"trained {res.steps} steps in {res.seconds:.1f} s, final loss {res.final_loss:.5f}; saved to {args.out}")
    return 0


def _is_directory_out(out: str) -> bool:
    """``--out`` names a directory of shards: an existing directory, a path ending in a
    separator, or a path without a file suffix (``.safetensors``, ``.npy``, ``.png`` are files)."""
    import os
    from pathlib import Path

    return out.endswith(("/", os.sep)) or Path(out).is_dir() or Path(out).suffix == ""


def parse_spec(text: str | None, loc: str = "spec"):
    """A component name, or a JSON object spec (``'{"name": "ddim", "steps": 20}'``)."""
    if text is None:
        return None
    if not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        from .errors import ConfigError

        raise ConfigError(f"{text!r} is not valid JSON ({exc.msg} at column {exc.colno}); pass a name or a JSON "
                          """object such as '{"name": "ddim", "steps": 20}'""", loc=loc) from None


def _reference(pipe):
    """Held-out data of the dataset the run was trained on (its test split), if it records one."""
    spec = pipe.metadata.get("data")
    if spec is None:
        return None

    def draw(n: int):
        import diffusekit as dk

        from .train import as_example

        params = {"name": spec} if isinstance(spec, str) else dict(spec)
        params.update({"n": n, "split": "test"})
        try:
            return as_example(dk.create("dataset", params, loc="data")).x
        except Exception:  # a dataset without a test split or size: no reference panel
            return None

    return draw


def cmd_sample(args) -> int:
    import diffusekit as dk

    from . import writers
    from .errors import ConfigError

    kwargs = {}
    if args.sampler:
        kwargs["sampler"] = parse_spec(args.sampler, loc="--sampler")
    if args.n < 1:
        raise ConfigError(f"--n must be a positive number of samples, got {args.n}", loc="--n")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}", loc="--batch-size")
    if _is_directory_out(args.out):
        from .files import check_output_dir

        check_output_dir(args.out, loc="--out")
        return _sample_sharded(args, kwargs)
    writers.check_suffix(args.out, loc="--out")  # before sampling: a known file type in a writable directory
    if dk.distributed.world_size() > 1:
        raise ConfigError(f"{args.out!r} is a single file, which {dk.distributed.world_size()} processes cannot share; "
                          "pass a directory (e.g. --out samples/) to write one shard per batch", loc="out")
    pipe = dk.Pipeline.load(args.run, backend=args.backend)
    seeds = list(range(args.seed, args.seed + args.n))  # sample i uses seed + i, as in directory output
    x = pipe.sample(args.n, generator=seeds, batch_size=args.batch_size or 256, progress=not args.quiet, **kwargs)
    what = writers.write_samples(args.out, x, writers.WriteContext(pipe, pipe.last_nfe, _reference(pipe)),
                                 loc="--out")
    print(f"wrote {args.n} samples ({pipe.last_nfe} NFE) to {args.out}: {what}")
    return 0


def _sample_sharded(args, kwargs) -> int:
    from pathlib import Path

    import diffusekit as dk

    dist = dk.distributed
    dist.init()
    pipe = dk.Pipeline.load(args.run, backend=args.backend, device=dist.device())
    batch_size = 64 if args.batch_size is None else args.batch_size
    report = dist.sample(pipe, args.n, args.out, batch_size=batch_size, seed=args.seed,
                         progress=not args.quiet, **kwargs)
    if dist.is_main():
        rate = f", {report.samples_drawn / report.seconds:.1f} samples/s" if report.samples_drawn else ""
        print(f"wrote {args.n} samples in {report.num_shards} shards to {args.out} ({report.drawn} drawn, "
              f"{report.skipped} reused; {report.world_size} process(es){rate}); manifest "
              f"{Path(args.out) / dist.MANIFEST_FILE}")
    return 0


def _load_items(path: str | None, key: str | None, loc: str, dataset_ok: bool = False):
    """Items to evaluate: a tensor (rows are items) or a lazily loaded list of WAV files."""
    from pathlib import Path

    import torch

    import diffusekit as dk

    from . import state as st
    from .errors import ConfigError

    p = Path(path)
    if p.is_dir():
        if (p / dk.distributed.MANIFEST_FILE).exists():
            x = dk.distributed.load_samples(p)
            if not torch.is_tensor(x):
                flat = st.flatten(x)
                if key not in flat:
                    raise ConfigError(f"{path} holds a dict state with leaves {sorted(flat)}; pick one with --key",
                                      loc="key")
                x = flat[key]
            return x
        wavs = sorted(p.glob("*.wav"))
        if not wavs:
            raise ConfigError(f"{path} has no {dk.distributed.MANIFEST_FILE} and no .wav files; pass a sample "
                              "directory written by `diffusekit sample`, a directory of WAV files, a .safetensors or "
                              ".npy file", loc=loc)
        return _WavItems(wavs)
    if p.suffix == ".safetensors" and p.exists():
        from safetensors.torch import load_file

        tensors = load_file(str(p))
        if key is None and len(tensors) == 1:
            return next(iter(tensors.values()))
        k = key or "samples"
        if k not in tensors:
            raise ConfigError(f"{path} has keys {sorted(tensors)}; pick one with --key", loc="key")
        return tensors[k]
    if p.suffix == ".npy" and p.exists():
        import numpy as np

        return torch.from_numpy(np.load(str(p), allow_pickle=False))
    if dataset_ok and not p.exists():
        reg = dk.registry()
        spec = parse_spec(path, loc=loc)
        name = spec.get("name") if isinstance(spec, dict) else spec
        if ("dataset", name) in reg:
            from .train import as_example

            return as_example(dk.create("dataset", spec, loc=loc)).x
    raise ConfigError(f"{path!r} not found (expected a sample directory, a directory of .wav files, a .safetensors "
                      "or .npy file" + (", or a registered dataset name / JSON spec" if dataset_ok else "") + ")",
                      loc=loc)


class _WavItems:
    """WAV files read on access (mono float32), so each rank reads only the files it scores."""

    def __init__(self, files):
        self.files = list(files)
        self.names = [f.name for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            import soundfile as sf
        except ImportError:  # pragma: no cover - the audio extra is missing
            from .errors import ConfigError

            raise ConfigError("reading .wav files needs soundfile: pip install 'diffusekit[audio]'",
                              loc="samples") from None
        import torch

        wav, _ = sf.read(str(self.files[i]), dtype="float32", always_2d=True)
        return torch.from_numpy(wav.mean(1))

    def matched(self, other: "_WavItems") -> "_WavItems":
        """``other``'s files in this list's order (matched by file name)."""
        from .errors import ConfigError

        by_name = dict(zip(other.names, other.files))
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise ConfigError(f"{len(missing)} sample file(s) have no reference of the same name, e.g. "
                              f"{missing[:5]}; the reference directory must hold one file per sample",
                              loc="reference")
        return _WavItems([by_name[n] for n in self.names])


def cmd_evaluate(args) -> int:
    import math

    import diffusekit as dk

    dist = dk.distributed
    dist.init()
    samples = _load_items(args.samples, args.key, "samples")
    reference = None if args.reference is None else _load_items(args.reference, args.key, "reference",
                                                                dataset_ok=True)
    if isinstance(samples, _WavItems) and isinstance(reference, _WavItems):
        reference = samples.matched(reference)
    res = dist.evaluate(parse_spec(args.metric, loc="--metric"), samples, reference, bins=args.bins)
    res["world_size"] = dist.world_size()
    if dist.is_main():
        if args.json:
            _print_json(res)
        else:
            extra = ""
            if "std" in res:
                extra = (f" (std {res['std']:.4g}, min {res['min']:.4g}, max {res['max']:.4g}, {res['count']} items"
                         + (f", {res['nonfinite']} non-finite" if res["nonfinite"] else "") + ")")
            value = res["value"]
            print(f"{res['metric']}: {value:.6g}{extra}" if math.isfinite(value) else f"{res['metric']}: {value}{extra}")
    return 0


def cmd_export(args) -> int:
    import diffusekit as dk

    pipe = dk.Pipeline.load(args.run)
    from pathlib import Path

    suffix = {"onnx": ".onnx", "tensorrt": ".engine"}.get(args.format, "")
    target = args.out or str(Path(args.run) / (("sampler" if args.mode == "sampler" else "model") + suffix))
    options = {"mode": args.mode, "fp16": args.fp16}
    if args.format == "tensorrt":
        # on a machine without a GPU, "always" fails before writing anything (nothing is replaced)
        options["build"] = args.build
    report = dk.export(pipe, args.format, target, **options)
    _print_json(report.as_dict() if hasattr(report, "as_dict") else report)
    if args.format == "tensorrt" and args.build != "never" and getattr(report, "engine", None) is None:
        print(f"error: no TensorRT engine was built ({report.reason})", file=sys.stderr)
        return 3
    return 0


def cmd_check(args) -> int:
    from .testing.conformance import check_plugin

    ok = check_plugin(args.plugin, verbose=True)
    return 0 if ok else 1


def cmd_quickstart(args) -> int:
    from .quickstart import run

    run(out=args.out, dataset=args.dataset, steps=args.steps, onnx=not args.no_onnx)
    return 0


def set_threads(threads: int | None) -> int:
    """Intra-op threads for this process: ``--threads``, else ``DIFFUSEKIT_THREADS``, else 1.

    The command line's models are small (MLPs, small U-Nets on 2 cores); for them torch's
    default of one thread per core oversubscribes a shared machine and is several times
    slower (docs/benchmarks.md, "threads"). Pass ``--threads 0`` to keep torch's default."""
    import os

    import torch

    from .errors import ConfigError

    if threads is None:
        raw = os.environ.get("DIFFUSEKIT_THREADS", "1")
        try:
            threads = int(raw)
        except ValueError:
            raise ConfigError(f"DIFFUSEKIT_THREADS={raw!r} must be an integer (0: torch's default)",
                              loc="DIFFUSEKIT_THREADS") from None
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0: torch's default), got {threads}", loc="--threads")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


TRAIN_CONFIG_HELP = """\
CONFIG is a JSON file or a recipe name (diffusekit components recipe). The file holds the
pipeline keys (process, parameterization, network, sampler, guidance, conditioner,
sample_shape: each a registered name or {"name": ..., **params}) plus
  "data":  a registered dataset name or {"name": ..., **params}
  "train": keyword arguments of dk.train (steps, batch_size, lr, weight_decay, warmup,
           grad_clip, ema, seed, lr_decay ("none" or "cosine"), checkpoint_every,
           keep_checkpoints, log_every)
Example:
  {"process": "vp", "parameterization": "v", "network": {"name": "mlp", "dim": 2},
   "data": {"name": "moons", "n": 20000}, "train": {"steps": 2000, "batch_size": 256}}
Checkpoints go to OUT/checkpoint/step-XXXXXXXX (the newest three are kept); --resume
continues from the newest one that verifies, after checking that config and data match.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusekit", description="Diffusion-family models, composed from plugins.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op CPU threads (default: DIFFUSEKIT_THREADS, else 1, the fastest for the small "
                        "models of the command line; 0 keeps torch's default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list plugins, their components, overrides and load errors")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help="list registered components")
    p.add_argument("kind", nargs="?", help="only this kind (process, sampler, network, dataset, writer, ...)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_components)

    p = sub.add_parser("info", help="describe a component (provenance and config schema)")
    p.add_argument("name", help="a registered component name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("schema", help="print the JSON schema of a component's config")
    p.add_argument("kind", help="component kind (process, sampler, network, ...)")
    p.add_argument("name", help="registered name of the component")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("quickstart", help="train, sample, plot and export a small 2-D model (about a minute)")
    p.add_argument("--out", default="runs/quickstart", help="output directory (default runs/quickstart)")
    p.add_argument("--dataset", default="gmm", help="a registered 2-D dataset (default gmm)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and onnxruntime sampling")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("train", help="train a pipeline from a JSON config or recipe name",
                       description=TRAIN_CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a JSON config file or a recipe name (see below)")
    p.add_argument("--out", required=True, help="run directory (checked before training starts)")
    p.add_argument("--data", help="dataset name or JSON spec, replacing the config's 'data'")
    p.add_argument("--steps", type=int, help="training steps, replacing train.steps")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="batch size, replacing train.batch_size")
    p.add_argument("--lr", type=float, help="learning rate, replacing train.lr")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="write a checkpoint every N steps (default: train.checkpoint_every, else 0 = none)")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a saved pipeline (a directory --out: shards, under torchrun too)")
    p.add_argument("run", help="a run directory written by train / Pipeline.save")
    p.add_argument("--n", type=int, default=1000, help="number of samples (default 1000)")
    p.add_argument("--out", required=True, help="a file (.safetensors, .npy, .png and the suffixes of plugin "
                   "writers: diffusekit components writer), or a directory (a path without suffix): shards of "
                   "--batch-size samples plus manifest.json, split across torchrun ranks, resumable")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="samples drawn at once (memory bound; results do not depend on it; default 256, "
                   "directory --out: samples per shard, default 64)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses the generator seeded seed + i")
    p.add_argument("--sampler", help="sampler name or JSON spec overriding the saved one")
    p.add_argument("--backend", default="torch", help="torch (default), onnxruntime or tensorrt (needs an export)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="compute a registered metric over a test set (split across torchrun ranks)")
    p.add_argument("samples", help="a sample directory (diffusekit sample --out DIR), a directory of .wav files, "
                   "or a .safetensors / .npy file")
    p.add_argument("--metric", required=True, help="registered metric name or JSON spec (diffusekit components metric)")
    p.add_argument("--reference", help="the same forms as SAMPLES (WAV files matched by name), or a registered "
                   "dataset name / JSON spec")
    p.add_argument("--key", help="safetensors key or state leaf to evaluate (dict states)")
    p.add_argument("--bins", nargs=3, type=float, metavar=("LO", "HI", "COUNT"),
                   help="histogram of per-item values")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a saved pipeline (ONNX; TensorRT on a GPU machine)")
    p.add_argument("run", help="a run directory written by train / Pipeline.save")
    p.add_argument("--format", default="onnx", help="onnx (default) or tensorrt")
    p.add_argument("--mode", default="denoiser", choices=["denoiser", "sampler"],
                   help="denoiser: the network graph; sampler: the whole sampling loop in one graph")
    p.add_argument("--fp16", action="store_true", help="half-precision weights (GPU runtimes)")
    p.add_argument("--build", default="always", choices=["always", "auto", "never"],
                   help="tensorrt: always (default) fails without a GPU before writing anything; never writes the "
                   "ONNX model and the build plan only")
    p.add_argument("--out", help="output file (default RUN/model.onnx, RUN/sampler.onnx or RUN/model.engine)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check", help="run the conformance kit on a plugin's components")
    p.add_argument("plugin", help="a plugin name (diffusekit plugins)")
    p.set_defaults(func=cmd_check)
    return parser


BUILTIN_COMMANDS = ("plugins", "components", "info", "schema", "quickstart", "train", "sample", "evaluate", "export",
                    "check")


def _command_position(argv: Sequence[str]) -> int:
    """Index of the subcommand in argv (after global options such as ``--threads N``)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-h", "--help"):
        i += 1 if "=" in argv[i] else 2
    return i


def _add_plugin_commands(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Plugin subcommands (``register_commands``) are added when one is invoked or for ``--help``;
    a plugin command named like a built-in one is skipped with a warning (the built-in wins)."""
    i = _command_position(argv)
    if i < len(argv) and argv[i] in BUILTIN_COMMANDS:
        return
    import diffusekit as dk

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for spec in dk.registry().specs("command"):
        if spec.name in BUILTIN_COMMANDS:
            print(f"warning: plugin {spec.provenance.plugin!r} registers a command {spec.name!r}, which is a built-in "
                  "command; the plugin's command is ignored (rename it)", file=sys.stderr)
            continue
        p = sub.add_parser(spec.name, help=f"{spec.description} [plugin {spec.provenance.plugin}]")
        configure = spec.extra.get("configure")
        if configure is not None:
            configure(p)
        p.set_defaults(func=spec.obj)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; expected failures print one ``error:`` line naming the file or
    option and the fix (exit code 2); ``DIFFUSEKIT_DEBUG=1`` shows tracebacks."""
    import os

    from .errors import DiffusekitError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m diffusekit -- sample ...`: torchrun passes the "--" through
        argv = argv[1:]
    debug = os.environ.get("DIFFUSEKIT_DEBUG", "") not in ("", "0")
    parser = build_parser()
    try:
        _add_plugin_commands(parser, argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse reports bad usage by exiting: return its code
            return int(exc.code or 0)
        set_threads(args.threads)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        code = int(args.func(args) or 0)
        _shutdown_distributed(orderly=True)
        return code
    except DiffusekitError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (DIFFUSEKIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        _shutdown_distributed(orderly=False)  # error paths: a peer may never reach a barrier


def _shutdown_distributed(orderly: bool) -> None:
    """Destroy the process group a command started under torchrun (no-op otherwise; the
    distributed module is imported only when a command already did)."""
    mod = sys.modules.get("diffusekit.distributed")
    if mod is not None:
        mod.shutdown(orderly=orderly)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
