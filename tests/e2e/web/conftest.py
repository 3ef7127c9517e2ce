"""Fixtures for the web app's end-to-end tests: real processes, Debian's chromium."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.processes import RunningProcess, start_process, start_server

WEB_READY = r"web app listening on http://[^\s:]+:(\d+)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCRIPT_LABEL = "<script>alert(1)</script>"
EGYPTIAN_CAT = 285  # line 286 of labels.txt

StartWeb = Callable[..., str]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium: Playwright's own browser download cannot work offline."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    return {**browser_type_launch_args, "executable_path": chromium, "args": CHROMIUM_ARGS}


@pytest.fixture
def page(page: Page) -> Page:
    """pytest-playwright's page, with file choosers intercepted for the whole test.

    `expect_file_chooser` switches interception off when it returns and on again when next
    called; a key press can win that race and open a chooser no one sees.
    """
    page.on("filechooser", lambda chooser: None)
    return page


@pytest.fixture(scope="session")
def start_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartWeb]:
    """Start `pyserving web --server ADDRESS [ARGS]` on a free port; returns its base URL.

    Every process started is stopped at the end of the session, and must exit cleanly.
    """
    started: list[RunningProcess] = []

    def start(server: str, *args: str) -> str:
        log = tmp_path_factory.mktemp("web") / "web.log"
        web = start_process(
            ["web", "--server", server, "--host", "127.0.0.1", "--port", "0", *args],
            WEB_READY,
            log,
        )
        started.append(web)
        return f"http://127.0.0.1:{web.match.group(1)}"

    yield start
    for web in started:
        assert web.stop() == 0, web.output()


@pytest.fixture(scope="session")
def web_url(start_web: StartWeb, server_address: str) -> str:
    """The web app in front of the session's imagenet model server."""
    return start_web(server_address)


@pytest.fixture(scope="session")
def small_limit_url(start_web: StartWeb, server_address: str) -> str:
    """A web app that takes uploads of at most 1 MiB."""
    return start_web(server_address, "--max_upload_mib", "1")


@pytest.fixture(scope="session")
def script_label_url(
    start_web: StartWeb, imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A web app whose model calls class 285 (Chelsea's) `<script>alert(1)</script>`."""
    repository = tmp_path_factory.mktemp("script-label")
    (version,) = (imagenet_repository / "imagenet").iterdir()
    copy = shutil.copytree(version, repository / "imagenet" / version.name)
    labels = (copy / "labels.txt").read_text("utf-8").splitlines()
    labels[EGYPTIAN_CAT] = SCRIPT_LABEL
    (copy / "labels.txt").write_text("".join(f"{label}\n" for label in labels), "utf-8")
    log = tmp_path_factory.mktemp("logs") / "script-label-server.log"
    server = start_server("imagenet", repository / "imagenet", log)
    yield start_web(f"127.0.0.1:{server.match.group(1)}")
    server.stop()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
