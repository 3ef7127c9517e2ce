"""Input kinds: one module each, owning its fields of the signature and its inputs.

`KINDS` names the module of each kind, and `kind_module` imports the one a version needs;
the interface every module provides is `pyserving.kinds.base`. `load_signature` and
`write_signature` are `pyserving.signature`'s, with each kind reading its own part of
`servable.json` (`read_kind`). The service asks the module of a version's kind; it never
branches on the kind itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pyserving import signature as servable_format
from pyserving.errors import ServableError
from pyserving.kinds.base import KindModule
from pyserving.signature import Fail, Signature

KINDS = {
    "image": "pyserving.kinds.image",
    "features": "pyserving.kinds.features",
    "text": "pyserving.kinds.text",
    "audio": "pyserving.kinds.audio",
    "tensor": "pyserving.kinds.tensor",
}


def kind_module(kind: str) -> KindModule:
    """The module of input kind `kind`; ServableError naming the kinds there are."""
    if kind not in KINDS:
        raise ServableError(_unknown(kind))
    module: KindModule = importlib.import_module(KINDS[kind])  # type: ignore[assignment]
    missing = [m for m in _MEMBERS if not hasattr(module, m)]
    if missing:
        raise ServableError(
            f"kind module {KINDS[kind]} lacks {', '.join(missing)} (see pyserving.kinds.base)"
        )
    return module


def read_kind(kind: object, doc: dict[str, Any], labels: list[str], fail: Fail) -> dict[str, Any]:
    """The kind's part of a signature, read by its module: `fields` and the output side."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise fail(_unknown(kind))
    module = kind_module(kind)
    return {**module.OUTPUT.parse(doc, labels, fail), "fields": module.parse(doc, fail)}


def load_signature(folder: Path) -> Signature:
    """Read and validate the signature of the version in `folder` (ServableError if wrong)."""
    return servable_format.load_signature(folder, read_kind)


def write_signature(signature: Signature, folder: Path) -> None:
    """Write `servable.json` and `labels.txt` into `folder`, after validating the signature."""
    servable_format.write_signature(signature, folder, read_kind)


def _unknown(kind: object) -> str:
    return f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}"


_MEMBERS = (
    *KindModule.__annotations__,
    "parse",
    "describe",
    "row_shape",
    "warm_up",
    "prepare",
    "prepare_batch",
    "wire",
    "occlusions",
)
