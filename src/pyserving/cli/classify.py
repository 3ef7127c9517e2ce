"""`pyserving classify`: files, texts or features sent to a running server, classes printed."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from pyserving.cli.flags import top_k
from pyserving.cli.remote import add_remote_flags, connect
from pyserving.errors import PyservingError, UsageError


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    classify = commands.add_parser("classify", help="classify inputs with a running server")
    classify.add_argument(
        "images",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files, or folders searched recursively for the inputs the model takes",
    )
    classify.add_argument("--model", default="", help="model name (default: the server's)")
    classify.add_argument("--version", type=int, default=0, help="0: the newest")
    classify.add_argument(
        "--label", default="", help="the version a version label names (instead of --version)"
    )
    classify.add_argument(
        "--top-k", type=top_k, default=5, help="classes per input, best first (1 or more)"
    )
    classify.add_argument(
        "--feature", action="append", default=[], metavar="NAME=VALUE", help="for features models"
    )
    classify.add_argument(
        "--text", action="append", default=[], help="for text models: a text to classify"
    )
    classify.add_argument(
        "--concurrency", type=int, default=8, help="files sent at once (folders and --output)"
    )
    classify.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="write one row per file to FILE.csv or FILE.jsonl (default: print them)",
    )
    add_remote_flags(classify, timeout=30.0)
    classify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving classify` with its parsed flags; the exit code."""
    from pyserving.cli.classify_files import TABLE_FILES, classify_paths

    if args.label and args.version:
        raise UsageError("give --version or --label, not both")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.output or len(args.images) > TABLE_FILES or any(p.is_dir() for p in args.images):
        return classify_paths(args, partial(connect, args))
    features = dict(parse_feature(f) for f in args.feature)
    if not args.images and not features and not args.text:
        raise UsageError(
            "give image or audio files, --feature NAME=VALUE for a features model, or "
            "--text TEXT for a text model"
        )
    # (label, the bytes sent in `input`): files are read as they are sent.
    inputs: list[tuple[str, bytes | None]] = [(str(p), None) for p in args.images]
    inputs += [(repr(t), t.encode("utf-8")) for t in args.text]
    inputs = inputs or [("features", b"")]
    failed = 0
    with connect(args) as client:
        for label, data in inputs:
            try:
                image = Path(label).read_bytes() if data is None else data
                started = time.perf_counter()
                result = client.classify(
                    image, args.model, args.version, args.top_k, features=features, label=args.label
                )
                elapsed_ms = (time.perf_counter() - started) * 1000
            except (OSError, PyservingError) as exc:
                print(f"{label}: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(
                f"{label}  (model {result.model_name}, version {result.model_version}, "
                f"{elapsed_ms:.1f} ms)"
            )
            width = max([len(p.name) for p in result.predictions] + [5])
            print(f"  {'rank':>4}  {'class':<{width}}  {'index':>5}  {'score':>7}")
            for rank, p in enumerate(result.predictions, 1):
                print(f"  {rank:>4}  {p.name:<{width}}  {p.index:>5}  {p.score:>7.2%}")
    return 1 if failed else 0


def parse_feature(text: str) -> tuple[str, float]:
    """`NAME=VALUE` as a name and a number; UsageError otherwise."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise UsageError(f"--feature takes NAME=VALUE with a number, got {text!r}") from None
