"""Scan a model's folder on disk for versions. Pure functions of the disk."""

from __future__ import annotations

from pathlib import Path


def list_versions(base_path: Path) -> list[int]:
    """The versions under `base_path`, oldest first.

    Only folders named by a positive integer count, so the exporter's hidden temporary
    folders and anything else are never mistaken for a version.
    """
    if not base_path.is_dir():
        return []
    versions = []
    for entry in base_path.iterdir():
        name = entry.name
        if name.isascii() and name.isdigit() and int(name) > 0 and entry.is_dir():
            versions.append(int(name))
    return sorted(versions)
