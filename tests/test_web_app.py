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
from pyserving.client.formats import clip_type, image_type
from pyserving.results import Classification, Prediction
from pyserving.web import model_server
from pyserving.web.app import STATIC_DIR, create_app
from pyserving.web.endpoints import overall_status, result_json, summary
from pyserving.web.model_server import FileResult, ModelServer
from pyserving.web.uploads import Upload, format_mib
from tests.scripted_server import ScriptedModel, ScriptedServer, scripted_server


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
    # A model may have fewer than five classes; a text is one text, whatever its lines.
    assert "five best" not in html and "best guesses (up to five)" in html
    assert "one text, line breaks included" in html
    for path in ["/"] + [f"/static/{p.name}" for p in STATIC_DIR.iterdir()]:
        text = client.get(path).text
        assert not re.search(r"(src|href)=\"https?:|url\(\s*['\"]?https?:|@import", text), path
    css = client.get("/static/app.css")
    assert css.headers["content-type"].startswith("text/css")
    assert "system-ui" in css.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def test_security_headers_on_every_response(client: TestClient) -> None:
    responses = [
        client.get("/"),
        client.get("/static/app.js"),
        client.get("/healthz"),
        client.get("/no-such-page"),
        client.post("/api/classify", files=[("images", ("a.txt", b"not an image", "image/png"))]),
    ]
    for response in responses:
        headers = response.headers
        where = f"{response.request.method} {response.request.url.path} {response.status_code}"
        assert "default-src 'self'" in headers["content-security-policy"], where
        assert headers["x-content-type-options"] == "nosniff", where
        assert headers["referrer-policy"] == "no-referrer", where


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
    assert no_file.json() == {
        "error": "nothing to classify: choose photos or audio clips, or type a text"
    }
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
        "choose fewer or smaller files",
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

    def recording_client(
        address: str, timeout: float, tls: ClientTLS | None, auth_token: str | None
    ) -> AsyncClient:
        made.append(AsyncClient(address, timeout, tls, auth_token))
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

        def __init__(
            self, address: str, timeout: float, tls: ClientTLS | None, token: str | None
        ) -> None:
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


# --- every kind: a scripted model server reports what each model takes ------------------

KINDS = (
    ScriptedModel("reg", "tensor"),
    ScriptedModel("colours", "image"),
    ScriptedModel("lang", "text"),
    ScriptedModel("speech", "audio"),
    ScriptedModel("lin", "features", ("petal length", "petal width")),
    ScriptedModel("warming", ""),
)
NAMES = [m.name for m in KINDS]
WAV = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\0\0\0"


@pytest.fixture
def kinds() -> Iterator[ScriptedServer]:
    with scripted_server(KINDS, default="colours") as server:
        yield server


@pytest.fixture
def kinds_client(kinds: ScriptedServer) -> Iterator[TestClient]:
    with TestClient(create_app(kinds.address, models=NAMES)) as c:
        yield c


def shown_panel(html: str) -> str:
    """The one panel the page shows; the others are hidden, and disabled so they send nothing."""
    panels = re.findall(r'<(fieldset|div) class="panel" data-panel="(\w+)"([^>]*)>', html)
    assert [name for _, name, _ in panels] == ["image", "audio", "text", "features", "tensor"]
    shown = [name for _, name, attrs in panels if "hidden" not in attrs]
    assert len(shown) == 1, panels
    for tag, name, attrs in panels:
        if tag == "fieldset" and name not in shown:
            assert "disabled" in attrs, name
    return str(shown[0])


def test_the_picker_knows_each_models_kind(kinds_client: TestClient) -> None:
    html = kinds_client.get("/").text
    options = re.findall(r'<option value="(\w+)" data-kind="(\w*)"([^>]*)>([^<]+)<', html)
    assert [(name, kind) for name, kind, *_ in options] == [
        ("reg", "tensor"),
        ("colours", "image"),
        ("lang", "text"),
        ("speech", "audio"),
        ("lin", "features"),
        ("warming", ""),
    ]
    reg, colours = options[0], options[1]
    assert reg[2].endswith(" disabled") and reg[3] == "reg (not a classifier: use predict)"
    assert colours[2].endswith(" selected")  # the first model the page can classify with
    assert shown_panel(html) == "image"
    assert """data-features='["petal length", "petal width"]'""" in html


@pytest.mark.parametrize(
    ("model", "panel", "heading", "marks"),
    [
        (
            "colours",
            "image",
            "What's in your photo?",
            ['name="images" type="file" accept="image/*"'],
        ),
        ("lang", "text", "What's this text?", ['<textarea id="text" name="text"']),
        (
            "speech",
            "audio",
            "What's in your clip?",
            ['name="clips" type="file" accept="audio/*"', 'id="record"'],
        ),
        (
            "lin",
            "features",
            "Which class is it?",
            ['name="feature.petal length"', 'name="feature.petal width"'],
        ),
        (
            "reg",
            "tensor",
            "Not a classifier",
            ['<strong id="tensor-name">reg</strong> is not a classifier'],
        ),
        ("warming", "image", "What's in your photo?", []),  # kind not known yet
    ],
)
def test_the_page_shows_the_input_the_model_takes(
    kinds_client: TestClient, model: str, panel: str, heading: str, marks: list[str]
) -> None:
    html = kinds_client.get("/", params={"model": model}).text
    assert shown_panel(html) == panel
    assert f'<h1 id="heading">{heading}</h1>'.replace("'", "&#39;") in html
    for mark in marks:
        assert mark in html
    assert re.search(r'<option value="' + model + '"[^>]* selected', html)
    classify_hidden = re.search(r'id="classify-button" type="submit" hidden', html) is not None
    assert classify_hidden == (panel == "tensor")


def test_the_page_for_an_unknown_model_says_which_there_are(kinds_client: TestClient) -> None:
    response = kinds_client.get("/", params={"model": "nope"})
    assert response.status_code == 400
    assert "unknown model &#39;nope&#39;: choose one of reg, colours" in response.text


def test_the_api_lists_the_models_and_their_kinds(kinds_client: TestClient) -> None:
    models = kinds_client.get("/api/models").json()["models"]
    assert models[0] == {"name": "reg", "kind": "tensor", "features": []}
    assert models[4] == {
        "name": "lin",
        "kind": "features",
        "features": ["petal length", "petal width"],
    }
    assert models[5] == {"name": "warming", "kind": "", "features": []}


def test_without_a_picker_the_default_models_kind_decides(kinds: ScriptedServer) -> None:
    kinds.default = "lang"
    with TestClient(create_app(kinds.address)) as client:
        html = client.get("/").text
        assert "<select" not in html and shown_panel(html) == "text"
        assert client.get("/api/models").json() == {
            "models": [{"name": "lang", "kind": "text", "features": []}]
        }


def test_while_the_server_is_down_the_page_offers_photos(nowhere: str) -> None:
    with TestClient(create_app(nowhere, models=["lang", "colours"])) as client:
        html = client.get("/").text
        assert shown_panel(html) == "image"
        assert re.findall(r'data-kind="(\w*)"', html) == ["", "", ""]  # the form, two options
        assert client.get("/api/models").json()["models"][0] == {
            "name": "lang",
            "kind": "",
            "features": [],
        }


def test_text_goes_to_the_server_as_utf8_bytes(
    kinds_client: TestClient, kinds: ScriptedServer
) -> None:
    text = "Grüße aus München, ça va?\n  Привет"
    response = kinds_client.post("/api/classify", data={"model": "lang", "text": text}, files=[])
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["filename"] == "Grüße aus München, ça va? Привет"
    assert result["predictions"] == [{"name": "heard", "score": 0.75, "index": 0}]
    (request,) = kinds.received()
    assert request.input == text.encode("utf-8")  # exactly what `classify --text` sends
    assert request.model_name == "lang" and not request.features


def test_a_long_text_is_titled_by_its_start_and_quoted_in_full(kinds_client: TestClient) -> None:
    text = "word " * 40
    page = kinds_client.post("/", data={"model": "lang", "text": text}, files=[]).text
    assert "“" + ("word " * 12).strip() + "…”" in page
    assert f'<blockquote class="quote" data-slot="quote" >{text}</blockquote>' in page
    assert "Classified 1 text." in page
    short = kinds_client.post("/", data={"model": "lang", "text": "hi"}, files=[]).text
    assert 'data-media=""' in short.split('<template id="card-template">')[0]


def test_features_go_to_the_server_by_name(kinds_client: TestClient, kinds: ScriptedServer) -> None:
    form = {"model": "lin", "feature.petal length": "1.5", "feature.petal width": " 0.25 "}
    response = kinds_client.post("/api/classify", data=form, files=[])
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["filename"] == "Features"
    (request,) = kinds.received()
    assert dict(request.features) == {"petal length": 1.5, "petal width": 0.25}
    assert request.input == b""
    page = kinds_client.post("/", data=form, files=[]).text
    assert "petal length = 1.5 · petal width = 0.25" in page


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "give a value for every feature: 'petal width' is empty"),
        ("wide", "feature 'petal width' must be a number, got 'wide'"),
        ("nan", "feature 'petal width' must be a finite number, got 'nan'"),
    ],
)
def test_a_feature_that_is_not_a_number_is_400(
    kinds_client: TestClient, kinds: ScriptedServer, value: str, message: str
) -> None:
    form = {"model": "lin", "feature.petal length": "1", "feature.petal width": value}
    response = kinds_client.post("/api/classify", data=form, files=[])
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert kinds.received() == []


def clip(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("clips", (name, data, "audio/wav"))  # the declared type is never trusted


def test_clips_are_checked_by_their_first_bytes(
    kinds_client: TestClient, kinds: ScriptedServer
) -> None:
    files = [
        clip("speech.wav", WAV),
        clip("song.webm", b"\x1aE\xdf\xa3\x9fB\x86\x81\x01"),
        clip("cat.wav", b"\xff\xd8\xff\xe0\0\x10JFIF"),
        clip("notes.wav", b"hello, this is not a clip"),
    ]
    response = kinds_client.post("/api/classify", data={"model": "speech"}, files=files)
    assert response.status_code == 200
    ok, webm, jpeg, text = response.json()["results"]
    assert ok["predictions"][0]["name"] == "heard"
    expected = "(expected WAV, FLAC, OGG (Vorbis or Opus) or MP3)"
    assert webm["error"] == f"song.webm is not an audio clip we can read {expected}"
    assert webm["detail"].startswith("WebM or Matroska file, 9 bytes, starts with b'\\x1aE")
    assert (webm["status"], webm["code"]) == (400, "INVALID_ARGUMENT")
    assert jpeg["detail"].startswith("an image file, 10 bytes")
    assert text["error"] == f"notes.wav is not an audio clip we can read {expected}"
    assert text["detail"] == "25 bytes, starts with b'hello, t'"
    (request,) = kinds.received()  # only the WAV reached the model server, byte for byte
    assert request.input == WAV and request.model_name == "speech"
    only_bad = kinds_client.post("/api/classify", data={"model": "speech"}, files=files[1:2])
    assert only_bad.status_code == 400


def test_the_page_without_javascript_plays_a_clip_back(kinds_client: TestClient) -> None:
    page = kinds_client.post("/", data={"model": "speech"}, files=[clip("a.wav", WAV)]).text
    assert 'data-media="audio"' in page
    assert 'src="data:audio/wav;base64,' in page
    assert "Classified 1 clip." in page


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (WAV, "audio/wav"),
        (b"fLaC\0\0\0\x22", "audio/flac"),
        (b"OggS\0\x02", "audio/ogg"),
        (b"ID3\x04\0\0", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),  # MPEG-1 layer III frame
        (b"\xff\xf3\x64\xc4", "audio/mpeg"),  # MPEG-2 layer III frame
        (b"\xff\xf1\x50\x80", None),  # ADTS AAC: layer 0, not MP3
        (b"\xff\xfb\xf0\x64", None),  # bitrate index 15 is reserved
        (b"\xff\xd8\xff\xe0", None),  # JPEG
        (b"RIFF\0\0\0\0WEBPVP8 ", None),
        (b"\x1aE\xdf\xa3", None),  # WebM: what MediaRecorder makes
        (b"\0\0\0\x20ftypM4A ", None),
        (b"", None),
    ],
)
def test_clip_type(data: bytes, kind: str | None) -> None:
    assert clip_type(data) == kind


def test_summary_names_what_was_classified() -> None:
    done = Classification((), "m", 1)
    text = FileResult("“hi”", done, 1.0, source="text")
    clips = [
        FileResult("a.wav", done, 1.0, source="clips"),
        FileResult("b", error="x", source="clips"),
    ]
    assert summary([text]) == "Classified 1 text."
    assert summary(clips) == "Classified 1 of 2 clips; 1 could not be classified."
    assert summary([FileResult("Features", error="x", source="features")]) == (
        "The input could not be classified."
    )
    assert summary([text, *clips]) == "Classified 2 of 3 inputs; 1 could not be classified."
