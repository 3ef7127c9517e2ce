"""The `pyserving export SOURCE ...` subcommands. Heavy imports happen only when one runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_export_sources(sources: Any) -> None:
    """Add one subcommand per export source to `sources` (an argparse subparsers object)."""
    zoo = sources.add_parser(
        "efficientnet-lite0", help="EfficientNet-Lite0 with ImageNet weights (offline)"
    )
    _add_destination(zoo)
    zoo.set_defaults(run=run_export_zoo, zoo_model="efficientnet-lite0")


def _add_destination(parser: argparse.ArgumentParser, name: str = "imagenet") -> None:
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--name", default=name, help="model name in the repository")


def run_export_zoo(args: argparse.Namespace) -> int:
    from pyserving.export.zoo import ZOO

    path = ZOO[args.zoo_model](args.repository, args.name)
    print(path)
    return 0
