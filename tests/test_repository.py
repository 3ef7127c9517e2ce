from pathlib import Path

from pyserving.repository import list_versions


def test_only_positive_integer_folders_are_versions(tmp_path: Path) -> None:
    for name in ["3", "10", "0", "-1", ".export-abc", "latest", "7a", "٣"]:
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a folder")
    assert list_versions(tmp_path) == [3, 10]


def test_missing_folder_has_no_versions(tmp_path: Path) -> None:
    assert list_versions(tmp_path / "nope") == []
