"""The aspired-versions policy, table by table: what to load, then what to unload."""

from __future__ import annotations

import pytest

from pyserving.core.lifecycle import versions_to_load, versions_to_unload


@pytest.mark.parametrize(
    ("aspired", "loaded", "failed", "load"),
    [
        ({1}, set(), set(), [1]),  # first start
        ({1, 2}, {1}, set(), [2]),  # a new version appears
        ({2}, {1}, {2}, []),  # it failed, and its files have not changed
        ({2, 3}, {1}, {2}, [3]),  # a newer one appears beside the failed one
        ({1, 2}, {1, 2}, set(), []),  # nothing to do
        (set(), {1}, set(), []),  # the folder emptied: nothing to load
        ({3, 1, 2}, set(), set(), [1, 2, 3]),  # oldest first
    ],
)
def test_what_to_load(
    aspired: set[int], loaded: set[int], failed: set[int], load: list[int]
) -> None:
    assert versions_to_load(aspired, loaded, failed) == load


@pytest.mark.parametrize(
    ("aspired", "loaded", "on_disk", "unload"),
    [
        ({2}, {1, 2}, {1, 2}, [1]),  # the new one serves: the old one goes
        ({2}, {1}, {1, 2}, []),  # the new one failed: the old one keeps serving
        ({3}, {1, 2}, {1, 2}, [1]),  # none aspired serving: the newest loaded one stays
        ({3}, {1, 2}, {1}, [2]),  # ... the newest whose folder is still on disk
        ({3}, {1, 2}, set(), [1, 2]),  # every folder deleted: nothing is kept
        (set(), {1}, {1}, []),  # the policy wants none, the folder is there: keep it
        (set(), {1}, set(), [1]),  # the model left the config (no folder counts): unload
        ({1, 2}, {1, 2}, {1, 2}, []),  # `all` / `latest 2`: both stay
        ({2, 3}, {1, 2, 3}, {1, 2, 3}, [1]),
    ],
)
def test_what_to_unload(
    aspired: set[int], loaded: set[int], on_disk: set[int], unload: list[int]
) -> None:
    assert versions_to_unload(aspired, loaded, on_disk) == unload
