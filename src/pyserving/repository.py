"""Scan the repository on disk: which versions exist, and which should be served.

Pure functions of the disk, as TensorFlow Serving's file-system source: every scan reports
the whole set, and the manager diffs it against what is loaded.
"""

from __future__ import annotations

from pathlib import Path

from pyserving.settings import ModelConfig, VersionPolicy
from pyserving.signature import LABELS_FILE, MODEL_FILE, SIGNATURE_FILE

REQUIRED_FILES = (SIGNATURE_FILE, LABELS_FILE, MODEL_FILE)


def list_versions(base_path: Path) -> list[int]:
    """The complete versions under `base_path`, oldest first.

    Only folders named by a positive integer that already hold servable.json, labels.txt
    and model.onnx count, so the exporter's hidden temporary folders and a version still
    being copied in are never mistaken for a version.
    """
    if not base_path.is_dir():
        return []
    versions = []
    for entry in base_path.iterdir():
        name = entry.name
        if name.isascii() and name.isdigit() and int(name) > 0 and _complete(entry):
            versions.append(int(name))
    return sorted(versions)


def _complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / f).is_file() for f in REQUIRED_FILES)


def aspired_versions(versions: list[int], policy: VersionPolicy) -> list[int]:
    """The versions that `policy` says to serve, out of `versions` (sorted, oldest first)."""
    if policy.kind == "all":
        return list(versions)
    if policy.kind == "specific":
        return [v for v in versions if v in policy.versions]
    return versions[-policy.num_versions :]


def scan(models: tuple[ModelConfig, ...]) -> dict[str, list[int]]:
    """For each model, the versions on disk that should be served now."""
    return {m.name: aspired_versions(list_versions(m.base_path), m.policy) for m in models}


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a version's files: tells when a failed copy was fixed."""
    out = []
    for name in REQUIRED_FILES:
        try:
            stat = (folder / name).stat()
        except OSError:
            continue
        out.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(out)
