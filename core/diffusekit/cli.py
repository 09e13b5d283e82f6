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

    cfg = _load_config(args.config)
    train_cfg = dict(cfg.pop("train", {}))
    data = cfg.pop("data", None)
    if args.data:
        data = args.data
    if data is None:
        print("error: the config needs a 'data' entry (a dataset spec) or pass --data", file=sys.stderr)
        return 2
    for key in ("steps", "batch_size", "lr"):
        val = getattr(args, key)
        if val is not None:
            train_cfg[key] = val
    pipe = dk.Pipeline.from_config(cfg)
    dataset = dk.create("dataset", data, loc="data")
    res = dk.train(pipe, dataset, out_dir=args.out, progress=not args.quiet, resume=args.resume,
                   checkpoint_every=train_cfg.pop("checkpoint_every", args.checkpoint_every), **train_cfg)
    print(f"trained {res.steps} steps in {res.seconds:.1f} s, final loss {res.final_loss:.5f}; saved to {args.out}")
    return 0


def cmd_sample(args) -> int:
    import torch

    import diffusekit as dk

    pipe = dk.Pipeline.load(args.run, backend=args.backend)
    kwargs = {}
    if args.sampler:
        kwargs["sampler"] = json.loads(args.sampler) if args.sampler.startswith("{") else args.sampler
    x = pipe.sample(args.n, generator=torch.Generator().manual_seed(args.seed), progress=not args.quiet, **kwargs)
    from safetensors.torch import save_file

    if args.out.endswith(".safetensors"):
        save_file({"samples": x.detach().cpu().contiguous()}, args.out)
    elif args.out.endswith(".png") and x.ndim == 2 and x.shape[1] == 2:
        from .plotting import plot_samples

        plot_samples(x, x, args.out)
    else:
        import numpy as np

        np.save(args.out, x.detach().cpu().numpy())
    print(f"wrote {args.n} samples ({pipe.last_nfe} NFE) to {args.out}")
    return 0


def cmd_export(args) -> int:
    import diffusekit as dk

    pipe = dk.Pipeline.load(args.run)
    from pathlib import Path

    suffix = {"onnx": ".onnx", "tensorrt": ".engine"}.get(args.format, "")
    target = args.out or str(Path(args.run) / (("sampler" if args.mode == "sampler" else "model") + suffix))
    report = dk.export(pipe, args.format, target, mode=args.mode, fp16=args.fp16)
    _print_json(report.as_dict() if hasattr(report, "as_dict") else report)
    return 0


def cmd_check(args) -> int:
    from .testing.conformance import check_plugin

    ok = check_plugin(args.plugin, verbose=True)
    return 0 if ok else 1


def cmd_quickstart(args) -> int:
    from .quickstart import run

    run(out=args.out, dataset=args.dataset, steps=args.steps, onnx=not args.no_onnx)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusekit", description="Diffusion-family models, composed from plugins.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list plugins, their components and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help="list registered components")
    p.add_argument("kind", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_components)

    p = sub.add_parser("info", help="describe a component (provenance and config schema)")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("schema", help="print the JSON schema of a component's config")
    p.add_argument("kind")
    p.add_argument("name")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("quickstart", help="train, sample, plot and export a small 2-D model")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--dataset", default="gmm")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--no-onnx", action="store_true")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("train", help="train a pipeline from a JSON config or recipe name")
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--data")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample a saved pipeline")
    p.add_argument("run")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", help="sampler name or JSON spec overriding the saved one")
    p.add_argument("--backend", default="torch")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("export", help="export a saved pipeline")
    p.add_argument("run")
    p.add_argument("--format", default="onnx")
    p.add_argument("--mode", default="denoiser", choices=["denoiser", "sampler"])
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check", help="run the conformance kit on a plugin's components")
    p.add_argument("plugin")
    p.set_defaults(func=cmd_check)
    return parser


def _add_plugin_commands(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Plugin subcommands (``register_commands``) are added only when one is invoked."""
    builtin = {"plugins", "components", "info", "schema", "quickstart", "train", "sample", "export", "check",
               "-h", "--help"}
    if argv and argv[0] in builtin:
        return
    import diffusekit as dk

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for spec in dk.registry().specs("command"):
        p = sub.add_parser(spec.name, help=spec.description)
        configure = spec.extra.get("configure")
        if configure is not None:
            configure(p)
        p.set_defaults(func=spec.obj)


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import DiffusekitError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        _add_plugin_commands(parser, argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse reports bad usage by exiting: return its code
            return int(exc.code or 0)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except DiffusekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
