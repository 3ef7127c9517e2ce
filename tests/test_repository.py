from pathlib import Path

import pytest

from pyserving.core.repository import aspired_versions, fingerprint, scan
from pyserving.core.settings import ModelConfig, VersionPolicy
from pyserving.signature import list_versions


def complete(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("servable.json", "labels.txt", "model.onnx"):
        (folder / name).write_text("x")
    return folder


def test_only_complete_positive_integer_folders_are_versions(tmp_path: Path) -> None:
    for name in ["3", "10", "0", "-1", ".export-abc", "latest", "7a", "٣"]:
        complete(tmp_path / name)
    (tmp_path / "5").write_text("a file, not a folder")
    copying = tmp_path / "11"  # still being copied: no servable.json yet
    copying.mkdir()
    (copying / "model.onnx").write_text("half")
    assert list_versions(tmp_path) == [3, 10]


def test_missing_folder_has_no_versions(tmp_path: Path) -> None:
    assert list_versions(tmp_path / "nope") == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy("latest"), [9]),
        (VersionPolicy("latest", num_versions=2), [5, 9]),
        (VersionPolicy("latest", num_versions=10), [1, 5, 9]),
        (VersionPolicy("all"), [1, 5, 9]),
        (VersionPolicy("specific", versions=(1, 7)), [1]),
    ],
)
def test_version_policies(policy: VersionPolicy, expected: list[int]) -> None:
    assert aspired_versions([1, 5, 9], policy) == expected


def test_scan_reports_every_model(tmp_path: Path) -> None:
    complete(tmp_path / "a" / "1")
    complete(tmp_path / "a" / "2")
    models = (
        ModelConfig("a", tmp_path / "a"),
        ModelConfig("b", tmp_path / "b"),
        ModelConfig("all-a", tmp_path / "a", VersionPolicy("all")),
    )
    assert scan(models) == {"a": [2], "b": [], "all-a": [1, 2]}


def test_fingerprint_changes_when_a_file_changes(tmp_path: Path) -> None:
    folder = complete(tmp_path / "1")
    before = fingerprint(folder)
    (folder / "model.onnx").write_text("fixed, and longer")
    assert fingerprint(folder) != before
