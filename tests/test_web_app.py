"""The web app in process (Starlette's TestClient): page, limits, errors, health, the channel."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from pyserving.client import AsyncClient, ClientTLS
from pyserving.results import Classification, Prediction
from pyserving.web import model_server
from pyserving.web.app import STATIC_DIR, create_app
from pyserving.web.endpoints import image_type, overall_status, result_json, summary
from pyserving.web.model_server import FileResult, ModelServer
from pyserving.web.uploads import Upload, format_mib


def run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """asyncio.run in a thread of its own: Playwright's sync API keeps a loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def nowhere() -> str:
    """An address where no model server listens."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def client(nowhere: str) -> Iterator[TestClient]:
    with TestClient(create_app(nowhere, max_upload_bytes=1000)) as c:
        yield c


def photo(
    name: str = "cat.jpg", data: bytes = b"\xff\xd8\xff tiny"
) -> tuple[str, tuple[str, bytes, str]]:
    return ("images", (name, data, "image/jpeg"))


def test_the_page_is_accessible_and_self_contained(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert '<html lang="en"' in html
    assert re.search(r'<label[^>]* for="images"', html)
    assert re.search(
        r'<input[^>]* id="images" name="images" type="file" accept="image/\*" multiple', html
    )
    assert 'name="viewport"' in html
    assert "<select" not in html  # one model: no picker
    for path in ["/"] + [f"/static/{p.name}" for p in STATIC_DIR.iterdir()]:
        text = client.get(path).text
        assert not re.search(r"(src|href)=\"https?:|url\(\s*['\"]?https?:|@import", text), path
    css = client.get("/static/app.css")
    assert css.headers["content-type"].startswith("text/css")
    assert "system-ui" in css.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_the_model_picker_shows_with_two_models_or_more(nowhere: str) -> None:
    with TestClient(create_app(nowhere, models=["imagenet", "iris"])) as client:
        html = client.get("/").text
    assert re.search(r'<label for="model">Model</label>\s*<select id="model" name="model">', html)
    assert re.findall(r'<option value="([^"]+)"', html) == ["imagenet", "iris"]
    with TestClient(create_app(nowhere, models=["imagenet"])) as client:
        assert "<select" not in client.get("/").text


def test_an_unknown_model_choice_is_refused(nowhere: str) -> None:
    with TestClient(create_app(nowhere, models=["imagenet", "iris"])) as client:
        response = client.post("/api/classify", files=[photo()], data={"model": "<b>"})
        assert response.status_code == 400
        assert response.json() == {"error": "unknown model '<b>': choose one of imagenet, iris"}
        page = client.post("/", files=[photo()], data={"model": "<b>"})
        assert page.status_code == 400
        assert "unknown model &#39;&lt;b&gt;&#39;" in page.text


def test_uploads_that_cannot_be_read_are_400(client: TestClient) -> None:
    not_multipart = client.post("/api/classify", content=b"hello")
    assert not_multipart.status_code == 400
    assert "multipart/form-data" in not_multipart.json()["error"]
    no_file = client.post("/api/classify", files=[("other", ("a.txt", b"x", "text/plain"))])
    assert no_file.json() == {"error": "choose one or more photos to classify"}
    empty_picker = client.post(
        "/api/classify", files=[("images", ("", b"", "application/octet-stream"))]
    )
    assert empty_picker.status_code == 400


def test_at_most_50_files(nowhere: str) -> None:
    with TestClient(create_app(nowhere)) as client:
        files = [photo(f"{i}.jpg", b"x") for i in range(51)]
        response = client.post("/api/classify", files=files)
    assert response.status_code == 400
    assert "Too many files" in response.json()["error"]


def test_too_large_by_content_length_is_413(client: TestClient) -> None:
    response = client.post("/api/classify", files=[photo(data=b"x" * 2000)])
    assert response.status_code == 413
    assert re.fullmatch(
        r"the upload \(2\.\d+ KiB\) is over the limit of 0\.977 KiB: "
        "choose fewer or smaller photos",
        response.json()["error"],
    )


def test_too_large_without_content_length_is_413(client: TestClient) -> None:
    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
        for _ in range(100):
            yield b"x" * 100
        yield b"\r\n--b--\r\n"

    response = client.post(
        "/api/classify", content=body(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413
    assert response.json()["error"].startswith("the upload is over the limit")


def test_unreachable_server(client: TestClient, nowhere: str) -> None:
    down = f"the classification server at {nowhere} is not reachable"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable", "reason": down, "server": nowhere}
    page = client.get("/")
    assert page.status_code == 200
    assert down in page.text
    response = client.post("/api/classify", files=[photo(), photo("dog.jpg")])
    assert response.status_code == 503
    assert [r["error"] for r in response.json()["results"]] == [down, down]


def test_model_not_served_is_404_per_file(server_address: str, chelsea_jpeg: bytes) -> None:
    app = create_app(server_address, models=["imagenet", "iris"])
    with TestClient(app) as client:
        response = client.post(
            "/api/classify", files=[photo(data=chelsea_jpeg)], data={"model": "iris"}
        )
        assert response.status_code == 404
        (result,) = response.json()["results"]
        assert result["code"] == "NOT_FOUND"
        assert "iris" in result["error"]
        ok = client.post("/api/classify", files=[photo(data=chelsea_jpeg)], data={"model": ""})
        assert ok.json()["results"][0]["model_name"] == "imagenet"


def test_a_refused_channel_is_replaced(monkeypatch: pytest.MonkeyPatch, nowhere: str) -> None:
    made: list[AsyncClient] = []

    def recording_client(address: str, timeout: float, tls: ClientTLS | None) -> AsyncClient:
        made.append(AsyncClient(address, timeout, tls))
        return made[-1]

    async def check_twice() -> None:
        server = ModelServer(nowhere)
        assert await server.check() == server.unreachable_message()
        assert await server.check() == server.unreachable_message()
        await server.close()

    monkeypatch.setattr(model_server, "AsyncClient", recording_client)
    monkeypatch.setattr(model_server, "RECONNECT_SECONDS", 3600.0)
    run_async(check_twice)
    assert len(made) == 1  # not more often than RECONNECT_SECONDS
    monkeypatch.setattr(model_server, "RECONNECT_SECONDS", 0.0)
    run_async(check_twice)
    assert len(made) == 3


def test_files_of_one_upload_are_classified_concurrently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uploads = [Upload(f"{i}.jpg", b"x") for i in range(4)]

    class GateClient:
        """Answers only once every upload's call is in flight at the same time."""

        in_flight = 0
        gate: asyncio.Event | None = None

        def __init__(self, address: str, timeout: float, tls: ClientTLS | None) -> None:
            pass

        async def classify(self, image: bytes, model_name: str, **kwargs: Any) -> Classification:
            GateClient.gate = GateClient.gate or asyncio.Event()
            GateClient.in_flight += 1
            if GateClient.in_flight == len(uploads):
                GateClient.gate.set()
            await asyncio.wait_for(GateClient.gate.wait(), 10)
            return Classification((Prediction("cat", 1.0, 0),), model_name or "m", 1)

        async def close(self) -> None:
            pass

    async def classify_all() -> None:
        server = ModelServer("unused:1")
        results = await server.classify_all(uploads, "")
        assert [r.filename for r in results] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
        assert all(r.classification is not None for r in results)
        await server.close()

    monkeypatch.setattr(model_server, "AsyncClient", GateClient)
    run_async(classify_all)


def test_overall_status() -> None:
    cat = Classification((Prediction("cat", 0.9, 1),), "m", 1)
    ok = FileResult("a.jpg", cat, 1.0)
    bad = FileResult("b.txt", error="bad", status=400)
    down = FileResult("c.jpg", error="down", status=503)
    assert overall_status([ok, bad, down]) == 200
    assert overall_status([bad, bad]) == 400
    assert overall_status([down, down]) == 503
    assert overall_status([down, bad]) == 400


def test_summary() -> None:
    cat = FileResult("a.jpg", Classification((), "m", 1), 1.0)
    bad = FileResult("b.txt", error="bad", status=400)
    assert summary([cat]) == "Classified 1 photo."
    assert summary([cat, cat]) == "Classified 2 photos."
    assert summary([bad]) == "The photo could not be classified."
    assert summary([bad, bad]) == "None of the 2 photos could be classified."
    assert summary([cat, bad, bad]) == "Classified 1 of 3 photos; 2 could not be classified."


def test_result_json() -> None:
    cat = Classification((Prediction("<cat>", 0.9, 1),), "m", 7)
    assert result_json(FileResult("a.jpg", cat, 12.345)) == {
        "filename": "a.jpg",
        "model_name": "m",
        "model_version": 7,
        "elapsed_ms": 12.3,
        "predictions": [{"name": "<cat>", "score": 0.9, "index": 1}],
    }
    assert result_json(FileResult("b", error="e", status=400, code="X", detail="d")) == {
        "filename": "b",
        "error": "e",
        "status": 400,
        "code": "X",
        "detail": "d",
    }


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
        (b"BM\0\0", "image/bmp"),
        (b"<svg", None),
        (b"", None),
    ],
)
def test_image_type(data: bytes, kind: str | None) -> None:
    assert image_type(data) == kind


def test_format_mib() -> None:
    assert format_mib(20 * 1024 * 1024) == "20 MiB"
    assert format_mib(int(1.5 * 1024 * 1024)) == "1.5 MiB"
    assert format_mib(300 * 1024) == "300 KiB"
