"""The model server is down when the web app starts, then comes up: the web app recovers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import StartWeb, free_port
from tests.processes import RunningProcess, start_server


@pytest.fixture
def late_server() -> Iterator[list[RunningProcess]]:
    """Where a test puts the model server it starts, so that it is stopped afterwards."""
    servers: list[RunningProcess] = []
    yield servers
    for server in servers:
        server.stop()


def poll(url: str, expected: int, deadline_seconds: float = 30) -> httpx.Response:
    """GET `url` until it answers `expected`; fail with the last answer at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == expected or time.monotonic() > deadline:
            assert response.status_code == expected, response.text
            return response
        time.sleep(0.2)


def test_server_down_then_back(
    page: Page,
    start_web: StartWeb,
    imagenet_repository: Path,
    late_server: list[RunningProcess],
    chelsea_jpeg: bytes,
    tmp_path: Path,
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    url = start_web(address)
    down = f"the classification server at {address} is not reachable"
    files = [("images", ("chelsea.jpg", chelsea_jpeg, "image/jpeg"))]

    # Down: the page loads and says so; the API and the health check answer 503.
    page.goto(url)
    expect(page.get_by_role("alert").filter(has_text=down)).to_be_visible()
    page.screenshot(path=tmp_path / "down.png", full_page=True)
    health = httpx.get(f"{url}/healthz")
    assert health.status_code == 503
    assert health.json()["reason"] == down
    for _ in range(3):  # several failures, so a client that keeps a broken channel would show
        response = httpx.post(f"{url}/api/classify", files=files, timeout=30)
        assert response.status_code == 503
        assert response.json()["results"][0]["error"] == down
    page_post = httpx.post(f"{url}/", files=files, timeout=30)
    assert page_post.status_code == 503
    assert down in page_post.text

    # Back: the same web app process serves again, and the open page drops its warning.
    log = tmp_path / "late-server.log"
    late_server.append(
        start_server("imagenet", imagenet_repository / "imagenet", log, "--port", str(port))
    )
    poll(f"{url}/healthz", 200)
    response = httpx.post(f"{url}/api/classify", files=files, timeout=30)
    assert response.status_code == 200
    assert response.json()["results"][0]["predictions"][0]["name"] == "Egyptian cat"
    expect(page.locator("#banner")).to_be_hidden(timeout=15_000)
    page.screenshot(path=tmp_path / "back.png", full_page=True)
