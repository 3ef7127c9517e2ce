"""What a user sees in the logs of a normal run: pyserving's own lines, not its libraries'."""

from __future__ import annotations

from pathlib import Path

from tests.processes import start_process


def test_the_web_app_logs_no_uvicorn_chatter(tmp_path: Path) -> None:
    web = start_process(
        ["web", "--host", "127.0.0.1", "--port", "0", "--server", "127.0.0.1:1"],
        r"web app listening on http://127.0.0.1:(\d+)",
        tmp_path / "web.log",
    )
    assert web.stop() == 0
    lines = web.output().splitlines()
    assert any(line.endswith("INFO pyserving.web.app: stopped") for line in lines), lines
    assert not [line for line in lines if "uvicorn" in line], lines
