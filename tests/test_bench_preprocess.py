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
    served = 2  # the size, then the served pipeline's cell
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert len(cells) == len(CANDIDATES) + 1
        # The served pipeline is the reference: measured, and 0 away from itself.
        assert cells[served - 1].endswith("(±0)") and float(cells[served - 1].split()[0]) > 0
        for cell in cells[1:]:
            assert cell == "not installed" or float(cell.split()[0]) > 0, row
