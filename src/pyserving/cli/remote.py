"""The one client builder of every remote verb, and the flags it reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from pyserving.cli.flags import SERVER_HELP, positive
from pyserving.client import DEFAULT_ADDRESS, Client, ClientTLS
from pyserving.client.auth import TOKEN_ENV, client_token
from pyserving.errors import UsageError


def add_remote_flags(parser: argparse.ArgumentParser, timeout: float) -> None:
    """--server, --timeout, the TLS flags and --auth_token_file: how a verb reaches a server."""
    parser.add_argument("--server", default=DEFAULT_ADDRESS, help=SERVER_HELP)
    parser.add_argument("--timeout", type=positive, default=timeout, help="seconds per call")
    add_client_tls(parser)


def add_client_tls(parser: argparse.ArgumentParser) -> None:
    """--ca_file, --client_cert, --client_key, --auth_token_file for commands that call a
    server."""
    parser.add_argument("--ca_file", type=Path, help="PEM CA of a TLS server (turns TLS on)")
    parser.add_argument("--client_cert", type=Path, help="PEM certificate for mutual TLS")
    parser.add_argument("--client_key", type=Path, help="PEM key for --client_cert")
    parser.add_argument(
        "--auth_token_file",
        type=Path,
        help=f"a file whose first line is the server's bearer token (default: ${TOKEN_ENV})",
    )


def client_tls(args: argparse.Namespace) -> ClientTLS | None:
    """The TLS settings those flags give, or None for a plaintext channel."""
    if not (args.ca_file or args.client_cert):
        return None
    if bool(args.client_cert) != bool(args.client_key):
        raise UsageError("--client_cert and --client_key go together")
    return ClientTLS(args.ca_file, args.client_cert, args.client_key)


def connect(args: argparse.Namespace) -> Client:
    """The client of every remote verb: --server, --timeout, the TLS flags and the token
    (--auth_token_file, else $PYSERVING_AUTH_TOKEN). Connects on its first call."""
    from pyserving.client import Client

    return Client(args.server, args.timeout, client_tls(args), client_token(args.auth_token_file))
