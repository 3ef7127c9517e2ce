"""TF Serving's REST shapes in process (httpx over ASGI): status, metadata, classify, predict."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.onnx_models import png


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


async def test_status_and_metadata_versioned_or_not(rest: httpx.AsyncClient) -> None:
    status = (await rest.get("/v1/models/lin")).json()
    assert status == (await rest.get("/v1/models/lin/versions/1")).json()
    (version,) = status["model_version_status"]
    assert version["state"] == "AVAILABLE" and version["engine"]["name"] == "onnxruntime"
    meta = (await rest.get("/v1/models/lin/versions/1/metadata")).json()
    assert meta == (await rest.get("/v1/models/lin/metadata")).json()
    assert meta["model_spec"] == {"name": "lin", "signature_name": "", "version": "1"}
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert set(inputs) == {"a", "b"}
    assert meta["metadata"]["engine"] == {"name": "onnxruntime", "precision": "f32"}
    missing = await rest.get("/v1/models/lin/versions/3")
    assert missing.status_code == 404 and "no version 3" in missing.json()["error"]


async def test_classify_examples_raw_images_and_uploads(rest: httpx.AsyncClient) -> None:
    body = {"examples": [{"a": 0.0, "b": 5.0}, {"a": [3.0], "b": 1.0}], "top_k": 1}
    named = (await rest.post("/v1/models/lin:classify", json=body)).json()
    assert [r[0][0] for r in named["results"]] == ["B", "A"] and len(named["results"][0]) == 1
    images = {"examples": [{"image": b64(png((250, 0, 0)))}]}
    red = (await rest.post("/v1/models/colours/versions/1:classify", json=images)).json()
    assert red["results"][0][0][0] == "red" and red["model_version"] == "1"
    raw = await rest.post(
        "/v1/models/colours:classify?top_k=3",
        content=png((0, 0, 250)),
        headers={"Content-Type": "image/png"},
    )
    assert [c[0] for c in raw.json()["results"][0]] == ["blue", "red", "green"]
    files = [
        ("a", ("a.png", png((0, 250, 0)), "image/png")),
        ("b", ("b.png", png((250, 0, 0)), "image/png")),
    ]
    upload = (await rest.post("/v1/models/colours:classify", files=files)).json()
    assert [r[0][0] for r in upload["results"]] == ["green", "red"]


async def test_predict_images_and_feature_rows(rest: httpx.AsyncClient) -> None:
    images = {"instances": [b64(png((0, 250, 0))), {"image": b64(png((0, 0, 250)))}]}
    probs = (await rest.post("/v1/models/colours:predict", json=images)).json()["predictions"]
    assert np.argmax(probs, axis=1).tolist() == [1, 2]
    rows = {"instances": [[0.0, 5.0], {"a": 9.0, "b": 0.0}]}
    probs = (await rest.post("/v1/models/lin/versions/1:predict", json=rows)).json()["predictions"]
    assert np.argmax(probs, axis=1).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("lin:classify", {"examples": [{"a": 1.0}]}, "missing feature(s) b"),
        ("lin:classify", {"examples": []}, "`examples` must be a non-empty list"),
        ("lin:classify", {"examples": [{"a": True, "b": 1}]}, "examples[0].a must be a number"),
        ("lin:predict", {"instances": [{"a": 1.0, "c": 2.0}]}, "missing feature(s) b"),
        ("lin:predict", {"instances": [[1.0]]}, "2 numbers (a, b)"),
        ("lin:predict", {"instances": "x"}, "`instances` must be a non-empty list"),
        (
            "colours:classify",
            {"examples": [{"image": {"b64": "%%"}}]},
            "image.b64 is not valid base64",
        ),
        ("colours:predict", {"instances": [{"b64": 3}]}, "b64 must be a base64 string"),
        ("lin:classify", {"examples": [{"a": 1, "b": 2}], "top_k": "x"}, "top_k"),
        (
            "letters:classify",
            {"instances": ["aab"]},
            ':classify takes {"examples": [...]}; {"instances": [...]} is the body of :predict',
        ),
        (
            "letters:classify",
            {"examples": ["aab"]},
            'examples[0] must be an object holding the text, e.g. {"text": "..."}',
        ),
        (
            "colours:classify",
            {"examples": ["x"]},
            'examples[0] must be an object holding the file, e.g. {"image": {"b64": "..."}}',
        ),
        (
            "lin:classify",
            {"examples": [[1, 2]]},
            'examples[0] must be an object of named features, e.g. {"a": ..., "b": ...}',
        ),
    ],
)
async def test_bad_requests_are_400_saying_why(
    rest: httpx.AsyncClient, path: str, body: object, message: str
) -> None:
    response = await rest.post(f"/v1/models/{path}", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


async def test_text_as_a_raw_body_instances_and_examples(rest: httpx.AsyncClient) -> None:
    raw = await rest.post(
        "/v1/models/letters:classify",
        content=b"bbb\n\tb",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    assert raw.json()["results"] == [[["b", pytest.approx(raw.json()["results"][0][0][1])]]]
    examples = {"examples": [{"text": "aaaa"}, {"text": "bbba"}], "top_k": 2}
    both = (await rest.post("/v1/models/letters:classify", json=examples)).json()
    assert [r[0][0] for r in both["results"]] == ["a", "b"] and len(both["results"][0]) == 2
    predicted = await rest.post("/v1/models/letters:predict", json={"instances": ["a", "bb"]})
    assert np.argmax(predicted.json()["predictions"], 1).tolist() == [0, 1]
    meta = (await rest.get("/v1/models/letters/metadata")).json()
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert inputs["text"]["dtype"] == "DT_STRING"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("letters:classify", b"\xff\xfe", "not valid UTF-8"),
        ("letters:classify", b"  ", "the text is empty"),
        ("letters:classify", b"a" * 1001, "over the limit of 1,000"),
        ("letters:predict", {"instances": [""]}, "the text is empty"),
        ("letters:predict", {"instances": [3]}, "instances[0] must be a string of text"),
        ("letters:classify", {"examples": [{"text": 1}]}, "examples[0].text must be a string"),
    ],
)
async def test_bad_text_is_400_saying_why(
    rest: httpx.AsyncClient, path: str, body: bytes | dict[str, object], message: str
) -> None:
    if isinstance(body, bytes):
        response = await rest.post(
            f"/v1/models/{path}", content=body, headers={"Content-Type": "text/plain"}
        )
    else:
        response = await rest.post(f"/v1/models/{path}", json=body)
    assert response.status_code == 400 and message in response.json()["error"]
