"""Class names for an export: from a labels file or a list, matched to the model's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pyserving
from pyserving.errors import ExportError

BACKGROUND = "background"

Labels = str | Path | Sequence[str]


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names shipped with pyserving (see data/README.md)."""
    text = resources.files(pyserving).joinpath("data/imagenet_labels.txt").read_text("utf-8")
    return tuple(text.splitlines())


def read_labels(labels: Labels) -> tuple[str, ...]:
    """Class names from a file (one per line), a comma-separated string, or a sequence.

    A string that names an existing file is read as a file; otherwise it must hold commas.
    """
    if isinstance(labels, Path) or (isinstance(labels, str) and _is_file(labels)):
        path = Path(labels)
        try:
            names = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ExportError(f"cannot read labels file {path}: {exc}") from exc
        while names and not names[-1].strip():
            names.pop()
        where = str(path)
    elif isinstance(labels, str):
        if "," not in labels:
            raise ExportError(
                f"labels {labels!r}: no such file; give a file with one class name per line "
                "or a comma-separated list such as setosa,versicolor,virginica"
            )
        names = [name.strip() for name in labels.split(",")]
        where = "the labels list"
    else:
        names = [str(name) for name in labels]
        where = "the labels list"
    if not names:
        raise ExportError(f"{where} holds no class names")
    blank = [i for i, name in enumerate(names) if not name.strip()]
    if blank:
        raise ExportError(f"{where}: class {blank[0]} has an empty name")
    bad = [name for name in names if "\n" in name or "\r" in name]
    if bad:
        raise ExportError(f"{where}: class name {bad[0]!r} holds a line break")
    return tuple(names)


def match_labels(
    labels: tuple[str, ...], classes: int, background: bool = False
) -> tuple[str, ...]:
    """`labels` checked against the model's `classes` outputs.

    With `background`, "background" is put before the labels as class 0: the 1001-class
    convention of TF-slim ImageNet models (Inception v3 in the TensorFlow Serving tutorial).
    """
    if background:
        labels = (BACKGROUND, *labels)
    if len(labels) == classes:
        return labels
    hint = ""
    if not background and classes == len(labels) + 1:
        hint = (
            f"; if class 0 is a background class (the 1001-class ImageNet convention), "
            f"pass --background or put {BACKGROUND!r} as the first label"
        )
    raise ExportError(f"the model has {classes} classes but {len(labels)} labels were given{hint}")


def _is_file(name: str) -> bool:
    """Whether `name` is an existing file; a long list of labels is no file name at all."""
    try:
        return Path(name).is_file()
    except OSError:  # ENAMETOOLONG
        return False
