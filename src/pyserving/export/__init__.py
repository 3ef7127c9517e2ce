"""Export trained models into servables: written atomically, verified before they appear.

Every exporter writes into a hidden temporary folder beside the model's versions, checks
the result with ONNX Runtime against the source framework, and only then renames it to its
version number. The server ignores folders whose name is not a positive integer, so a
half-written export is never loaded.

The Python API (each imports its framework only when first used)::

    from pyserving.export import export_torch, export_keras, export_sklearn, export_onnx
    from pyserving.export import export_silero_vad
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pyserving.export.write import (
    Progress,
    missing_extra,
    next_version,
    provenance,
    write_servable,
)

if TYPE_CHECKING:
    from pyserving.export.keras import export_keras as export_keras
    from pyserving.export.onnx import export_onnx as export_onnx
    from pyserving.export.silero import export_silero_vad as export_silero_vad
    from pyserving.export.sklearn import export_sklearn as export_sklearn
    from pyserving.export.torch import export_torch as export_torch

# The public exporters and the module each lives in, imported on first use.
_EXPORTERS = {
    "export_torch": "pyserving.export.torch",
    "export_keras": "pyserving.export.keras",
    "export_sklearn": "pyserving.export.sklearn",
    "export_onnx": "pyserving.export.onnx",
    "export_silero_vad": "pyserving.export.silero",
}

__all__ = [
    "Progress",
    "export_keras",
    "export_onnx",
    "export_silero_vad",
    "export_sklearn",
    "export_torch",
    "missing_extra",
    "next_version",
    "provenance",
    "write_servable",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTERS:
        return getattr(importlib.import_module(_EXPORTERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
