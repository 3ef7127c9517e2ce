"""`pyserving status`: each model version's state, engine, precision and version labels."""

from __future__ import annotations

import argparse
from typing import Any

from pyserving.cli.remote import add_remote_flags, connect


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    status = commands.add_parser("status", help="show each model version's state")
    status.add_argument("--model", default="", help="one model (default: all)")
    add_remote_flags(status, timeout=10.0)
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving status` with its parsed flags; the exit code."""
    with connect(args) as client:
        models = client.model_status(args.model)
    for model in models:
        print(model.name)
        if not model.versions:
            print("  (no versions yet)")
        for v in model.versions:
            runs = f"{v.engine} {v.precision}" if v.engine else ""
            labels = f"  labels: {', '.join(v.labels)}" if v.labels else ""
            print(f"  {v.version:>12}  {v.state:<10}  {runs:<16}  {v.error}".rstrip() + labels)
            if v.engine_reason:
                print(f"  {'':>12}  why: {v.engine_reason}")
    return 0
