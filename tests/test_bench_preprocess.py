"""`python -m bench.preprocess --quick` runs and prints a row per photo size.

A smoke test only: it checks the table's shape, never a timing.
"""

from __future__ import annotations

import pytest

from bench.preprocess import CANDIDATES, SIZES, main


def test_quick_run_prints_a_row_per_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "×" in line]
    assert [row.split("|")[1].strip() for row in rows] == [f"{w}×{h}" for w, h in SIZES]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert len(cells) == len(CANDIDATES) + 1
        old, served = cells[1], cells[2]
        # Pillow alone is the reference: 0 away from itself. The served path is measured.
        assert old.endswith("(±0)") and float(old.split()[0]) > 0
        assert float(served.split()[0]) > 0
        for cell in cells[1:]:
            assert cell == "not installed" or float(cell.split()[0]) > 0, row
