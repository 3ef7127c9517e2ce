"""The language-identification corpus (Debian's translated manpages), or a skip saying why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from examples import train_language_id as lid


def manpage_corpus(workdir: Path) -> lid.Corpus:
    """The manpages fetched into `workdir` and split; skips when apt-get cannot fetch them."""
    try:
        root = lid.fetch(workdir / "manpages")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        pytest.skip(f"the manpages-* packages could not be fetched with apt-get download: {exc}")
    return lid.split(lid.pages(root))
