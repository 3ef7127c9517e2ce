"""The v2 REST routes in process (httpx over ASGI): JSON, base64 and the binary extension."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from pyserving.core import oip
from tests.onnx_models import png


async def test_metadata_and_readiness(rest: httpx.AsyncClient) -> None:
    assert (await rest.get("/v2")).json() == oip.server_metadata()
    meta = (await rest.get("/v2/models/colours/versions/1")).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["parameters"]["engine"] == "onnxruntime"
    assert (await rest.get("/v2/models/lin/ready")).json() == {"ready": True}
    gone = await rest.get("/v2/models/lin/versions/4/ready")
    assert gone.status_code == 404 and gone.json()["ready"] is False
    assert "no version 4" in gone.json()["error"]


async def test_infer_base64_images_as_json(rest: httpx.AsyncClient) -> None:
    data = [
        base64.b64encode(png((0, 240, 0))).decode(),
        {"b64": base64.b64encode(png((9, 9, 200))).decode()},
    ]
    body = {
        "id": "q",
        "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": data}],
    }
    answer = (await rest.post("/v2/models/colours/infer", json=body)).json()
    assert (answer["id"], answer["model_name"], answer["model_version"]) == ("q", "colours", "1")
    (out,) = answer["outputs"]
    assert out["shape"] == [2, 3] and np.argmax(np.reshape(out["data"], (2, 3)), 1).tolist() == [
        1,
        2,
    ]


async def test_infer_with_the_binary_extension(rest: httpx.AsyncClient) -> None:
    head = {
        "inputs": [
            {
                "name": "features",
                "shape": [1, 2],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 8},
            }
        ],
        "outputs": [
            {"name": "probabilities", "parameters": {"classification": 2, "binary_data": True}}
        ],
    }
    header = json.dumps(head).encode()
    body = header + np.array([[5.0, 0.0]], "<f4").tobytes()
    response = await rest.post(
        "/v2/models/lin/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    (out,) = answer["outputs"]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 2]
    first, second = oip.decode_bytes_tensor(response.content[length:], "output")
    assert first.endswith(b":0:A") and second.endswith(b":1:B")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object with an `inputs` list"),
        (b'{"inputs": []}', "non-empty list"),
        (
            b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%"]}]}',
            "inputs[0].data[0] is not valid base64",
        ),
        (
            b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [1]}]}',
            "must be a base64 string",
        ),
    ],
)
async def test_bad_bodies_are_400_saying_why(
    rest: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await rest.post("/v2/models/colours/infer", content=body)
    assert response.status_code == 400 and message in response.json()["error"]


async def test_a_timeout_in_the_past_is_504(rest: httpx.AsyncClient) -> None:
    body = {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    response = await rest.post("/v2/models/lin/infer", json=body, headers={"timeout": "-1"})
    assert response.status_code == 504


async def test_text_models_take_bytes_as_strings(rest: httpx.AsyncClient) -> None:
    meta = (await rest.get("/v2/models/letters")).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["parameters"]["kind"] == "text"
    data = ["aaa b", {"b64": base64.b64encode(b"bbbb").decode()}]
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": data}]}
    (out,) = (await rest.post("/v2/models/letters/infer", json=body)).json()["outputs"]
    assert np.argmax(np.reshape(out["data"], (2, 2)), 1).tolist() == [0, 1]
    raw = oip.encode_bytes_tensor([b"b"])
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES"}
    head = {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}
    header = json.dumps(head).encode()
    binary = await rest.post(
        "/v2/models/letters/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert binary.status_code == 200
    for bad, message in (("", "the text is empty"), ("\ud800", "not valid UTF-8")):
        body["inputs"][0] |= {"shape": [1], "data": [bad]}
        # json.dumps writes a lone surrogate as the escape "\ud800", as a client may.
        response = await rest.post("/v2/models/letters/infer", content=json.dumps(body))
        assert response.status_code == 400 and message in response.json()["error"]
    body["inputs"][0] |= {"datatype": "FP32", "data": [1.0]}
    wrong = await rest.post("/v2/models/letters/infer", json=body)
    assert wrong.status_code == 400 and "BYTES (UTF-8 texts)" in wrong.json()["error"]
