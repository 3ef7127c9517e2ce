"""`pyserving health`: a server's gRPC health answer, as an exit code for probes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyserving.cli.remote import add_remote_flags, client_tls


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    health = commands.add_parser(
        "health", help="ask a server's gRPC health service; exit 0 when SERVING (for probes)"
    )
    health.add_argument("--service", default="", help='a model name ("": the whole server)')
    add_remote_flags(health, timeout=3.0)
    health.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving health` with its parsed flags; the exit code."""
    from pyserving.client.probe import check_health

    tls = client_tls(args)
    credentials = tls.credentials() if tls else None
    answer = check_health(args.server, args.service, args.timeout, credentials)
    print(answer, file=sys.stdout if answer.serving else sys.stderr)
    # Docker reserves exit code 2 for health checks: anything but SERVING is 1.
    return 0 if answer.serving else 1
