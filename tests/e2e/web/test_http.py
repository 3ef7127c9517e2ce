"""The web app over plain HTTP (httpx): the page without JavaScript, the API, limits, signals."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.web.conftest import FEATURES, SCRIPT_LABEL, WEB_READY, KindsApp
from tests.processes import start_process

MiB = 1024 * 1024
NOT_AN_IMAGE = "notes.txt is not an image we can read (expected JPEG, PNG, WebP, GIF or BMP)"
TEXT = ("images", ("notes.txt", b"hello, this is not a photo\n", "text/plain"))


def page_cards(html: str) -> list[list[str]]:
    """The class names of each results card the server rendered, best first."""
    rendered = html.split('<template id="card-template">')[0]
    return [
        re.findall(r'data-slot="name">([^<]*)</span>', card)
        for card in rendered.split('<article class="card"')[1:]
    ]


def test_form_post_renders_results_without_javascript(
    web_url: str, chelsea_jpeg: bytes, coffee_jpeg: bytes
) -> None:
    files = [
        ("images", ("chelsea.jpg", chelsea_jpeg, "image/jpeg")),
        ("images", ("coffee.jpg", coffee_jpeg, "image/jpeg")),
        TEXT,
    ]
    response = httpx.post(f"{web_url}/", files=files, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    cards = page_cards(response.text)
    assert len(cards) == 3
    assert cards[0][0] == "Egyptian cat" and len(cards[0]) == 5
    assert cards[1][0] == "espresso" and len(cards[1]) == 5
    assert cards[2] == []
    assert NOT_AN_IMAGE in response.text
    assert 'alt="Preview of chelsea.jpg"' in response.text
    assert 'src="data:image/jpeg;base64,' in response.text


def test_api_gives_one_result_per_file(web_url: str, chelsea_jpeg: bytes) -> None:
    files = [("images", ("chelsea.jpg", chelsea_jpeg, "image/jpeg")), TEXT]
    response = httpx.post(f"{web_url}/api/classify", files=files, timeout=30)
    assert response.status_code == 200
    cat, text = response.json()["results"]
    assert cat["filename"] == "chelsea.jpg"
    assert cat["model_name"] == "imagenet" and cat["model_version"] > 0
    assert cat["elapsed_ms"] > 0
    assert len(cat["predictions"]) == 5
    top = cat["predictions"][0]
    assert (top["name"], top["index"]) == ("Egyptian cat", 285)
    assert 0.5 < top["score"] <= 1
    assert text["filename"] == "notes.txt"
    assert text["error"] == NOT_AN_IMAGE
    assert text["status"] == 400 and text["code"] == "INVALID_ARGUMENT"
    assert "predictions" not in text


def test_api_refuses_a_lone_text_file_with_400(web_url: str) -> None:
    response = httpx.post(f"{web_url}/api/classify", files=[TEXT], timeout=30)
    assert response.status_code == 400
    assert response.json()["results"][0]["error"] == NOT_AN_IMAGE


def test_a_truncated_or_empty_photo_says_so(web_url: str, chelsea_jpeg: bytes) -> None:
    files = [
        ("images", ("half.jpg", chelsea_jpeg[: len(chelsea_jpeg) // 2], "image/jpeg")),
        ("images", ("empty.jpg", b"", "image/jpeg")),
    ]
    response = httpx.post(f"{web_url}/api/classify", files=files, timeout=30)
    assert response.status_code == 400
    half, empty = response.json()["results"]
    assert half["error"] == "half.jpg is cut short (truncated): only part of the image is there"
    assert empty["error"] == "empty.jpg is empty (0 bytes): expected JPEG, PNG, WebP, GIF or BMP"


def test_health(web_url: str, server_address: str) -> None:
    response = httpx.get(f"{web_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "server": server_address}


def test_upload_over_the_limit_is_413(small_limit_url: str) -> None:
    big = b"\xff\xd8\xff" + os.urandom(2 * MiB)
    files = [("images", ("big.jpg", big, "image/jpeg"))]
    response = httpx.post(f"{small_limit_url}/api/classify", files=files, timeout=30)
    assert response.status_code == 413
    assert "over the limit of 1 MiB" in response.json()["error"]

    page = httpx.post(f"{small_limit_url}/", files=files, timeout=30)
    assert page.status_code == 413
    assert "over the limit of 1 MiB" in page.text


def test_upload_without_length_is_counted_while_read(small_limit_url: str) -> None:
    boundary = "x-boundary"

    def body() -> Iterator[bytes]:
        yield (
            f"--{boundary}\r\nContent-Disposition: form-data; name=images; filename=big.jpg\r\n"
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        for _ in range(32):  # 4 MiB, with no Content-Length to give it away
            yield os.urandom(128 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{small_limit_url}/api/classify",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {
        "error": "the upload is over the limit of 1 MiB: choose fewer or smaller files"
    }


def test_labels_are_escaped_in_the_page(script_label_url: str, chelsea_jpeg: bytes) -> None:
    files = [("images", ("chelsea.jpg", chelsea_jpeg, "image/jpeg"))]
    response = httpx.post(f"{script_label_url}/", files=files, timeout=30)
    assert response.status_code == 200
    assert page_cards(response.text)[0][0] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert SCRIPT_LABEL not in response.text
    assert "script-src" in response.headers["content-security-policy"] or (
        "default-src 'self'" in response.headers["content-security-policy"]
    )


def test_sigint_and_sigterm_stop_it_cleanly(server_address: str, tmp_path: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        web = start_process(
            ["web", "--server", server_address, "--host", "127.0.0.1", "--port", "0"],
            WEB_READY,
            tmp_path / f"web-{sig.name}.log",
        )
        assert httpx.get(f"http://127.0.0.1:{web.match.group(1)}/healthz").status_code == 200
        assert web.stop(sig) == 0, web.output()
        assert "stopped" in web.output()
        assert "Traceback" not in web.output()


def test_the_api_names_each_models_kind_from_the_real_server(kinds_app: KindsApp) -> None:
    models = {m["name"]: m for m in httpx.get(f"{kinds_app.url}/api/models").json()["models"]}
    assert models["colours"] == {"name": "colours", "kind": "image", "features": []}
    assert models["lang"] == {"name": "lang", "kind": "text", "features": []}
    assert models["lin"] == {"name": "lin", "kind": "features", "features": list(FEATURES)}
    assert [m["kind"] for m in models.values()] == [
        {"colours": "image", "lang": "text", "lin": "features", "speech": "audio"}[n]
        for n in kinds_app.models
    ]


def test_texts_through_the_api_with_clear_errors(kinds_app: KindsApp) -> None:
    files = [
        ("text", ("a.txt", b"Wo ist der Bahnhof?", "text/plain")),
        ("text", ("b.txt", b"caf\xe9 au lait", "text/plain")),  # Latin-1, not UTF-8
    ]
    response = httpx.post(
        f"{kinds_app.url}/api/classify", data={"model": "lang"}, files=files, timeout=30
    )
    assert response.status_code == 200
    german, latin1 = response.json()["results"]
    assert german["filename"] == "Wo ist der Bahnhof?"
    assert german["predictions"][0]["name"] == "German"
    assert (latin1["status"], latin1["code"]) == (400, "INVALID_ARGUMENT")
    assert latin1["error"].startswith("“caf� au lait” could not be classified: the text is not")
    assert "not valid UTF-8" in latin1["detail"]
    # A form field, as a browser without JavaScript sends it.
    page = httpx.post(f"{kinds_app.url}/", data={"model": "lang", "text": "Bonjour !"}, timeout=30)
    assert page_cards(page.text)[0][0] == "French"
    image_model = httpx.post(
        f"{kinds_app.url}/api/classify", data={"model": "colours", "text": "red"}, timeout=30
    )
    assert image_model.status_code == 400
    (result,) = image_model.json()["results"]
    assert result["error"].startswith("“red” could not be classified: could not decode image")
