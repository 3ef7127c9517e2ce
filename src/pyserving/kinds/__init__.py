"""Input kinds: one module each, owning its `servable.json` input section and its inputs.

`KINDS` names the module of each kind, and `kind_module` imports the one a version needs;
the interface every module provides is `pyserving.kinds.base`. The service asks the module
of a version's kind; it never branches on the kind itself.
"""

from __future__ import annotations

import importlib

from pyserving.errors import ServableError
from pyserving.kinds.base import KindModule

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
        raise ServableError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
    module: KindModule = importlib.import_module(KINDS[kind])  # type: ignore[assignment]
    missing = [m for m in _MEMBERS if not hasattr(module, m)]
    if missing:
        raise ServableError(
            f"kind module {KINDS[kind]} lacks {', '.join(missing)} (see pyserving.kinds.base)"
        )
    return module


_MEMBERS = (
    *KindModule.__annotations__,
    "parse",
    "section",
    "row_shape",
    "warm_up",
    "prepare",
    "prepare_batch",
    "wire",
)
