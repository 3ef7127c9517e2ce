"""`pyserving web`: the web app, started against a model server."""

from __future__ import annotations

import argparse
from typing import Any

from pyserving.cli.flags import positive
from pyserving.cli.remote import add_client_tls, client_tls
from pyserving.client import DEFAULT_ADDRESS
from pyserving.client.auth import client_token
from pyserving.errors import missing_module
from pyserving.units import MiB


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    web = commands.add_parser(
        "web", help="the web app: upload photos or clips, type text, see the classes"
    )
    web.add_argument("--server", default=DEFAULT_ADDRESS, help="model server's gRPC address")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on")
    web.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    web.add_argument("--max_upload_mib", type=positive, default=20, help="largest upload")
    web.add_argument(
        "--models",
        default="",
        help="comma-separated model names to offer in a picker; the first is the default",
    )
    add_client_tls(web)
    web.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving web` with its parsed flags; the exit code."""
    try:
        from pyserving.web.app import run
    except ImportError as exc:
        missing = missing_module(exc, "pyserving web")
        if missing is None:
            raise
        raise missing from None

    return run(
        server=args.server,
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mib * MiB),
        models=[m for m in args.models.split(",") if m],
        tls=client_tls(args),
        auth_token=client_token(args.auth_token_file),
    )
