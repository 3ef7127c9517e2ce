"""The `pyserving` command: one module per verb, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import pyserving
from pyserving.cli import classify, explain, export, health, predict, serve, status, web
from pyserving.cli.flags import VerbParser
from pyserving.errors import PyservingError, missing_module

DESCRIPTION = "The `pyserving` command: export, serve, classify, predict."
VERBS = (serve, export, classify, explain, predict, status, health, web)  # in `--help` order


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pyserving` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # uvicorn logs its start-up chatter as INFO under the name "uvicorn.error"; the
    # servers log what matters (ports, URL) themselves.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.root.level))
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return code
    except PyservingError as exc:  # UsageError and MissingExtra exit 2, the rest 1
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:
        # A lazy import that no command turned into its own MissingExtra.
        missing = missing_module(exc)
        if missing is None:
            raise
        print(f"error: {missing}", file=sys.stderr)
        return missing.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout left (`| head`): stop quietly, as other Unix tools do, and
        # point stdout at /dev/null so that flushing it at exit raises nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the global flags, then each verb's own."""
    parser = VerbParser(
        prog="pyserving", description=DESCRIPTION, formatter_class=argparse.HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"pyserving {pyserving.__version__}")
    parser.add_argument("--log_level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=VerbParser)
    for verb in VERBS:
        verb.add_parser(commands)
    return parser
