"""The aspired-versions policy as pure functions over one model's snapshot.

As TensorFlow Serving's `AspiredVersionPolicy::GetNextAction` decides from a snapshot of
states, so does the manager here, in two steps around its I/O: which versions to load,
then, once those loads have ended, which to unload. Nothing here reads a disk or a clock;
`manager.ModelManager.reconcile` gathers the sets and carries the actions out.
"""

from __future__ import annotations

from collections.abc import Set


def versions_to_load(aspired: Set[int], loaded: Set[int], failed: Set[int]) -> list[int]:
    """The aspired versions neither loaded nor failed with the files they have now, oldest
    first (`failed`: versions that failed and whose files have not changed since)."""
    return sorted(set(aspired) - set(loaded) - set(failed))


def versions_to_unload(aspired: Set[int], loaded: Set[int], on_disk: Set[int]) -> list[int]:
    """The loaded versions to unload, oldest first.

    Everything loaded that is not aspired, except: while no aspired version is loaded (it
    failed, or is not there yet), the newest loaded version whose folder is still on disk
    keeps serving. Availability first: a version goes only once another serves.
    """
    keep = set(aspired)
    if not keep & set(loaded):
        still_there = set(loaded) & set(on_disk)
        if still_there:
            keep.add(max(still_there))
    return sorted(set(loaded) - keep)
