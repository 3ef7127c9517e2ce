"""Scan the repository on disk: which versions exist, and which should be served.

Pure functions of the disk, as TensorFlow Serving's file-system source: every scan reports
the whole set, and the manager diffs it against what is loaded.
"""

from __future__ import annotations

from pathlib import Path

from pyserving.core.settings import ModelConfig, VersionPolicy
from pyserving.signature import REQUIRED_FILES, list_versions


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
