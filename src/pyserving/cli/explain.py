"""`pyserving explain`: why a running server's model gives a class, part by part.

`pyserving explain photo.jpg [--class NAME] [--output heat.png]` prints each part's weight
(how much hiding it lowers the class's probability) and, for a photo, writes it with the
heatmap blended over it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pyserving.cli.classify import parse_feature
from pyserving.cli.remote import add_remote_flags, connect
from pyserving.errors import ConfigError, UsageError
from pyserving.results import Explanation

HEAT_OPACITY = 0.6  # of the strongest cell; weaker cells are more transparent


def add_parser(commands: Any) -> None:
    """Add the verb to `commands` (an argparse subparsers object)."""
    explain = commands.add_parser(
        "explain", help="why a running server's model gives a class: each part's weight"
    )
    explain.add_argument(
        "file", nargs="?", type=Path, help="an image, audio clip or text file to explain"
    )
    explain.add_argument("--class", dest="class_name", default="", help="default: the top class")
    explain.add_argument("--model", default="", help="model name (default: the server's)")
    explain.add_argument("--version", type=int, default=0, help="0: the newest")
    explain.add_argument(
        "--label", default="", help="the version a version label names (instead of --version)"
    )
    explain.add_argument(
        "--feature", action="append", default=[], metavar="NAME=VALUE", help="for features models"
    )
    explain.add_argument("--text", help="for text models: the text to explain")
    explain.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="for an image: write it with the heatmap blended over it (PNG, JPEG, ...)",
    )
    add_remote_flags(explain, timeout=60.0)
    explain.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run `pyserving explain` with its parsed flags; the exit code."""
    if args.label and args.version:
        raise UsageError("give --version or --label, not both")
    features = dict(parse_feature(f) for f in args.feature)
    if sum(bool(x) for x in (args.file, features, args.text)) != 1:
        raise UsageError(
            "give one input: a file (image, clip or text), --feature NAME=VALUE ... for a "
            "features model, or --text TEXT"
        )
    data = args.text.encode("utf-8") if args.text else b""
    if args.file:
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            # A failure, not a usage error (exit 1), as for every verb's unreadable file.
            raise ConfigError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    with connect(args) as client:
        result = client.explain(
            data,
            args.model,
            args.version,
            features=features,
            label=args.label,
            class_name=args.class_name,
        )
    print(describe(result))
    if args.output:
        if result.grid == (0, 0):
            raise UsageError(f"--output draws a heatmap over an image; this is a {result.kind}")
        blend(data, result).save(args.output)
        print(f"wrote {args.output}")
    return 0


def describe(result: Explanation) -> str:
    """The explanation as text: the class, then each part's weight."""
    c = result.explained
    lines = [
        f"{c.name} ({c.score:.2%}), model {result.model_name} version {result.model_version}",
        f"weight: how much P({c.name}) drops when the part is hidden ({result.method})",
    ]
    if result.grid != (0, 0):
        rows, columns = result.grid
        for r in range(rows):
            cells = result.parts[r * columns : (r + 1) * columns]
            lines.append("  " + " ".join(f"{p.weight:+.3f}" for p in cells))
        return "\n".join(lines)
    for p in result.parts:
        where = p.name if result.kind != "audio" else f"{p.start:.2f}–{p.end:.2f} s"
        lines.append(f"  {p.weight:+.4f}  {where}")
    return "\n".join(lines)


def blend(image: bytes, result: Explanation) -> Any:
    """The image with the heatmap over it: red where hiding a cell lowered the class's
    probability, blue where it raised it, stronger for larger weights. A Pillow image."""
    import io

    import numpy as np
    from PIL import Image, ImageOps

    photo = ImageOps.exif_transpose(Image.open(io.BytesIO(image))).convert("RGB")
    rows, columns = result.grid
    weights = np.array([p.weight for p in result.parts], dtype=np.float32).reshape(rows, columns)
    scale = float(np.abs(weights).max()) or 1.0
    # The server resized the whole photo to the model's size, so the grid spans all of it.
    heat = Image.fromarray(weights / scale, mode="F").resize(photo.size, Image.Resampling.BILINEAR)
    strength = np.asarray(heat)
    colour = np.zeros((*strength.shape, 3), dtype=np.float32)
    colour[..., 0] = strength > 0
    colour[..., 2] = strength < 0
    alpha = (HEAT_OPACITY * np.abs(strength))[..., None]
    pixels = np.asarray(photo, dtype=np.float32) / 255
    mixed = (1 - alpha) * pixels + alpha * colour
    return Image.fromarray((mixed * 255).round().astype(np.uint8))
