"""The soak benchmark runs end to end for a few seconds: samples, swaps, counts, growth."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.soak import main


def test_a_short_soak_swaps_versions_and_reports_growth(
    imagenet_repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--minutes", "0.25", "--swap-seconds", "4", "--sample-seconds", "2"]
    argv += [
        "--warmup-seconds",
        "2",
        "--concurrency",
        "4",
        "--repository",
        str(imagenet_repository),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    counts = dict(re.findall(r"^  (\w+ \w+) +(\d+)$", out, re.MULTILINE))
    for key in ("grpc ok", "grpc refused", "rest ok", "rest refused"):
        assert int(counts.get(key, 0)) > 0, out
    assert "unexpected" not in counts
    swapped = re.search(r"\((\d+) versions swapped in", out)
    assert swapped and int(swapped.group(1)) >= 2, out
    for figure in ("RSS", "open fds", "threads"):
        assert re.search(rf"^  {figure} +[\d.]+ → +[\d.]+", out, re.MULTILINE), out
