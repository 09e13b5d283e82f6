"""A CLI subcommand contributed through the ``register_commands`` hook."""

from __future__ import annotations

import argparse


def configure_hello(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to its argparse sub-parser."""
    parser.add_argument("--name", default="world", help="who to greet")


def hello(args: argparse.Namespace) -> int:
    """``diffusekit template-hello``: greet and list what this plugin registered."""
    import diffusekit as dk

    mine = [p for p in dk.plugins() if p["name"] == "template"]
    comps = mine[0]["components"] if mine else {}
    print(f"hello, {args.name}! template plugin components: {comps}")
    return 0
