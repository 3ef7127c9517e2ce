"""The web app's `POST /api/explain` in process, in front of a scripted gRPC server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from pyserving.results import Explanation, ExplanationPart, Prediction
from pyserving.web.app import create_app
from pyserving.web.endpoints import explanation_json, overall_status, result_json
from pyserving.web.model_server import FileResult
from tests.scripted_server import (
    EXPLAIN_METHOD,
    FEATURE_WEIGHTS,
    IMAGE_GRID,
    IMAGE_WEIGHTS,
    WINDOWS,
    WORD_WEIGHTS,
    ScriptedModel,
    ScriptedServer,
    scripted_server,
)

MODELS = (
    ScriptedModel("colours", "image"),
    ScriptedModel("lang", "text"),
    ScriptedModel("speech", "audio"),
    ScriptedModel("lin", "features", ("petal length", "petal width")),
    ScriptedModel("reg", "tensor", explain_error=("FAILED_PRECONDITION", "tensor: no classes")),
    ScriptedModel("busy", "image", explain_error=("RESOURCE_EXHAUSTED", "queue full")),
)
WAV = b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data\0\0\0\0"
PHOTO = ("images", ("cat.jpg", b"\xff\xd8\xff tiny", "image/jpeg"))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server(MODELS, default="colours") as s:
        yield s


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[TestClient]:
    names = [m.name for m in MODELS if m.kind != "tensor"] + ["reg"]
    with TestClient(create_app(server.address, models=names)) as c:
        yield c


def test_a_photo_is_explained_cell_by_cell(client: TestClient, server: ScriptedServer) -> None:
    response = client.post(
        "/api/explain", files=[PHOTO], data={"model": "colours", "class": "heard"}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    (result,) = response.json()["results"]
    rows, columns = IMAGE_GRID
    assert result["filename"] == "cat.jpg"
    assert result["kind"] == "image"
    assert result["model_name"] == "colours" and result["model_version"] == 1
    assert result["explained"] == {"name": "heard", "score": 0.75, "index": 0}
    assert result["grid"] == {"rows": rows, "columns": columns}
    assert result["method"] == EXPLAIN_METHOD
    assert [(p["row"], p["column"]) for p in result["parts"]] == [
        (r, c) for r in range(rows) for c in range(columns)
    ]
    assert [p["weight"] for p in result["parts"]] == pytest.approx(IMAGE_WEIGHTS)
    assert set(result["parts"][0]) == {"row", "column", "weight"}
    (request,) = server.explain_requests
    assert (request.model_name, request.class_name) == ("colours", "heard")
    assert request.input == PHOTO[1][1]


def test_a_text_is_explained_word_by_word(client: TestClient, server: ScriptedServer) -> None:
    text = "Grüße aus München, ça va"
    response = client.post(
        "/api/explain",
        files=[("text", ("t.txt", text.encode(), "text/plain"))],
        data={"model": "lang"},
    )
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["kind"] == "text" and "grid" not in result
    assert [p["word"] for p in result["parts"]] == text.split()
    assert [p["weight"] for p in result["parts"]] == pytest.approx(
        [WORD_WEIGHTS[i % len(WORD_WEIGHTS)] for i in range(5)]
    )
    (request,) = server.explain_requests
    assert request.input == text.encode() and request.class_name == ""  # the top class


def test_a_clip_is_explained_window_by_window(client: TestClient) -> None:
    response = client.post(
        "/api/explain", files=[("clips", ("a.wav", WAV, "audio/wav"))], data={"model": "speech"}
    )
    (result,) = response.json()["results"]
    assert [(p["start"], p["end"]) for p in result["parts"]] == [(s, e) for s, e, _ in WINDOWS]
    assert [p["weight"] for p in result["parts"]] == pytest.approx([w for _, _, w in WINDOWS])


def test_features_are_explained_by_name(client: TestClient, server: ScriptedServer) -> None:
    form = {"model": "lin", "feature.petal length": "1.5", "feature.petal width": "0.25"}
    response = client.post("/api/explain", data=form)
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert [p["name"] for p in result["parts"]] == ["petal length", "petal width"]
    assert [p["weight"] for p in result["parts"]] == pytest.approx(FEATURE_WEIGHTS)
    (request,) = server.explain_requests
    assert dict(request.features) == {"petal length": 1.5, "petal width": 0.25}


def test_a_clip_that_is_not_one_is_refused_before_it_is_sent(
    client: TestClient, server: ScriptedServer
) -> None:
    response = client.post(
        "/api/explain",
        files=[("clips", ("n.txt", b"not a clip", "text/plain"))],
        data={"model": "speech"},
    )
    assert response.status_code == 400
    (result,) = response.json()["results"]
    assert result["error"].startswith("n.txt is not an audio clip we can read")
    assert server.explain_requests == []


@pytest.mark.parametrize(
    ("form", "status", "code", "error"),
    [
        (
            {"model": "reg"},
            400,
            "FAILED_PRECONDITION",
            "cat.jpg could not be explained: tensor: no classes",
        ),
        (
            {"model": "colours", "class": "dog"},
            404,
            "NOT_FOUND",
            "cat.jpg could not be explained: no class 'dog': heard",
        ),
        (
            {"model": "busy"},
            429,
            "RESOURCE_EXHAUSTED",
            "the classification server is busy: try again in a moment",
        ),
    ],
)
def test_what_the_server_refuses_is_one_line_per_input(
    client: TestClient, form: dict[str, str], status: int, code: str, error: str
) -> None:
    response = client.post("/api/explain", files=[PHOTO], data=form)
    assert response.status_code == status
    (result,) = response.json()["results"]
    assert (result["status"], result["code"], result["error"]) == (status, code, error)


def test_a_form_that_cannot_be_read_is_400(client: TestClient) -> None:
    response = client.post("/api/explain", content=b"hello")
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]
    unknown = client.post("/api/explain", files=[PHOTO], data={"model": "<b>"})
    assert unknown.status_code == 400
    assert unknown.json()["error"].startswith("unknown model '<b>'")


def test_an_unreachable_server_is_503() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{sock.getsockname()[1]}"
    with TestClient(create_app(nowhere)) as client:
        response = client.post("/api/explain", files=[PHOTO])
    assert response.status_code == 503
    (result,) = response.json()["results"]
    assert result["error"] == f"the classification server at {nowhere} is not reachable"


def test_every_card_has_a_why_button_for_javascript_only(client: TestClient) -> None:
    html = client.get("/").text
    template = re.search(r'<template id="card-template">(.*?)</template>', html, re.S)
    assert template
    assert re.search(
        r'<div class="why js-only">\s*<button class="[^"]*why-toggle" type="button" '
        r'data-slot="why" aria-expanded="false">Why\?</button>\s*'
        r'<div class="why-panel" data-slot="why-panel" hidden>',
        template.group(1),
    )
    assert '<canvas class="heatmap" data-slot="heatmap" role="img" hidden>' in template.group(1)


def test_explanation_json_gives_each_kind_its_own_fields() -> None:
    top = Prediction("<cat>", 0.5, 3)
    image = Explanation(
        "m", 2, top, "image", (ExplanationPart(0.1, row=1, column=2),), (2, 3), "grey"
    )
    assert explanation_json(image) == {
        "model_name": "m",
        "model_version": 2,
        "kind": "image",
        "method": "grey",
        "explained": {"name": "<cat>", "score": 0.5, "index": 3},
        "parts": [{"row": 1, "column": 2, "weight": 0.1}],
        "grid": {"rows": 2, "columns": 3},
    }
    text = Explanation("m", 2, top, "text", (ExplanationPart(-0.2, "Wort"),))
    assert explanation_json(text)["parts"] == [{"word": "Wort", "weight": -0.2}]
    audio = Explanation("m", 2, top, "audio", (ExplanationPart(0.3, start=0.5, end=1.0),))
    assert explanation_json(audio)["parts"] == [{"start": 0.5, "end": 1.0, "weight": 0.3}]
    features = Explanation("m", 2, top, "features", (ExplanationPart(0.4, "sepal"),))
    assert explanation_json(features)["parts"] == [{"name": "sepal", "weight": 0.4}]
    result = FileResult("w.txt", elapsed_ms=3.25, source="text", explanation=text)
    assert result_json(result)["filename"] == "w.txt"
    assert result_json(result)["elapsed_ms"] == 3.2
    assert overall_status([result, FileResult("x", error="e", status=400)]) == 200
