"""The benchmark runs end to end with tiny counts: every row is there and nothing failed.

A smoke test only: it checks the tables, not the timings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.run import main

BEST = " (best)"
IMAGES = ("640×480", "4000×3000")
COLUMNS = "| workload | input | concurrency | requests | {} | rounds' range | p50 ms | p99 ms |"


def test_quick_benchmark_fills_every_row_without_errors(
    imagenet_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results.md"
    code = main(["--quick", "--repository", str(imagenet_repository), "--output", str(output)])
    text = output.read_text()
    assert code == 0, text
    assert text.strip() == capsys.readouterr().out.strip()
    assert COLUMNS.format("img/s") in text and "| server / in-process |" in text
    assert COLUMNS.format("req/s") in text and "| vs. empty call |" in text

    lines = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    header = lines[0]
    rows = {(c[0].removesuffix(BEST), c[1], c[2]): c for c in lines if c[2].isdigit()}
    expected = [
        *(("in-process", size, c) for size in IMAGES for c in ("1", "2")),
        *(("in-process, full-size decode", "4000×3000", c) for c in ("1", "2")),
        *(("server", size, c) for size in IMAGES for c in ("1", "4")),
        *(("server, tiny model", "4 features", c) for c in ("1", "4")),
        *(("grpc.aio empty call", "0 bytes", c) for c in ("1", "4")),
    ]
    expected.append(("server, queue bound 1 batch", "640×480", "64"))
    assert sorted(rows) == sorted(expected), text
    overload = rows.pop(("server, queue bound 1 batch", "640×480", "64"))
    assert overload[-1] == "0", f"errors other than RESOURCE_EXHAUSTED under overload:\n{text}"
    for key, row in rows.items():
        cell = dict(zip(header, row, strict=True))
        assert cell["errors"] == "0", f"row {key} had errors:\n{text}"
        assert float(cell["img/s"].replace(",", "")) > 0, f"row {key} measured nothing:\n{text}"
        if key[0] in ("server", "server, tiny model"):
            assert float(row[-1]) > 0, f"row {key} has no ratio:\n{text}"
    best = Counter(tuple(c[:2]) for c in lines if c[0].endswith(BEST))
    assert best == {
        ("in-process (best)", "640×480"): 1,
        ("in-process (best)", "4000×3000"): 1,
        ("in-process, full-size decode (best)", "4000×3000"): 1,
    }
    for target in (
        "throughput at concurrency 4, 640×480",
        "p50 at concurrency 1, 640×480",
        "throughput at concurrency 4, 4000×3000",
        "rejected requests at concurrency 64, queue bound 1 batch",
        "p99 of accepted requests at concurrency 64, queue bound 1 batch",
        "tiny model at concurrency 4",
    ):
        assert f"| {target} |" in text
    for fact in ("cores", "onnxruntime", "grpcio", "Measured 20"):
        assert fact in text
