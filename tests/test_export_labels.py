"""Class names for an export: from a file, a comma-separated list, or a sequence."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyserving.errors import ExportError
from pyserving.export.labels import read_labels


def test_a_file_a_list_and_a_sequence(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("cat\ndog\n\n", encoding="utf-8")
    assert read_labels(str(tmp_path / "labels.txt")) == ("cat", "dog")
    assert read_labels(tmp_path / "labels.txt") == ("cat", "dog")
    assert read_labels("cat, dog") == ("cat", "dog")
    assert read_labels(["cat", "dog"]) == ("cat", "dog")


def test_a_list_too_long_to_be_a_file_name_is_a_list() -> None:
    names = tuple(f"class{i}" for i in range(1000))  # 8,889 characters: ENAMETOOLONG as a path
    assert read_labels(",".join(names)) == names


def test_neither_a_file_nor_a_list() -> None:
    with pytest.raises(ExportError, match="no such file"):
        read_labels("labels.txt")
