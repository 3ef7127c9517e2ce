"""`python -m bench.preprocess --quick` runs and prints a row per photo size.

Smoke tests only: they check the table's and the agreement's shape, never a timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.preprocess import CANDIDATES, SERVED, SIZES, agreement, main


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


def test_agreement_reports_each_corpus_and_candidate(imagenet_repository: Path) -> None:
    version = next(p for p in (imagenet_repository / "imagenet").iterdir() if p.name.isdigit())
    lines = agreement(version, 4)
    headers = [line for line in lines if not line.startswith("- ")]
    assert [h.split(" (")[0] for h in headers] == [
        "photographs of scenes",
        "every scikit-image sample, textures included",
    ]
    served = [line for line in lines if line.startswith(f"- {SERVED.name}: ")]
    # One line per corpus; "top-1 same on N/4" where the wallpapers could be fetched.
    assert len(served) == len(headers) - sum("not available here" in h for h in headers)
    assert all("/4 (" in line and "largest probability difference" in line for line in served)
