"""The REST port with real HTTP clients: TF Serving shapes, the v2 protocol, metrics."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyserving.core.settings import BatchingSettings
from tests.onnx_models import publish, write_features_servable
from tests.processes import RunningProcess, free_port, schemathesis, start_server
from tests.scrape import metric_sum

ROOT = Path(__file__).parent.parent.parent
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"


@pytest.fixture(scope="module")
def rest_server(
    imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningProcess, str, str]]:
    log = tmp_path_factory.mktemp("rest") / "server.log"
    port = free_port()
    server = start_server(
        "imagenet", imagenet_repository / "imagenet", log, "--rest_api_port", str(port)
    )
    yield server, f"http://127.0.0.1:{port}", f"127.0.0.1:{server.match.group(1)}"
    server.stop()


@pytest.fixture(scope="module")
def http(rest_server: tuple[RunningProcess, str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_server[1], timeout=30) as client:
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- TensorFlow Serving shapes ----------------------------------------------------------


def test_tf_serving_status_and_metadata(http: httpx.Client) -> None:
    status = http.get("/v1/models/imagenet").json()
    (entry,) = status["model_version_status"]
    assert entry["state"] == "AVAILABLE"
    assert entry["status"] == {"error_code": "OK", "error_message": ""}
    version = entry["version"]
    assert http.get(f"/v1/models/imagenet/versions/{version}").json() == status
    meta = http.get("/v1/models/imagenet/metadata").json()
    assert meta["model_spec"] == {"name": "imagenet", "signature_name": "", "version": version}
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]


def test_tf_serving_classify(http: httpx.Client, chelsea_jpeg: bytes, coffee_jpeg: bytes) -> None:
    body = {
        "examples": [{"image": {"b64": b64(chelsea_jpeg)}}, {"image": {"b64": b64(coffee_jpeg)}}]
    }
    response = http.post("/v1/models/imagenet:classify", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2 and len(results[0]) == 5
    assert results[0][0][0] == "Egyptian cat" and results[1][0][0] == "espresso"
    _, score = results[0][0]
    assert 0 < score <= 1 and score >= results[0][1][1]


def test_tf_serving_predict(http: httpx.Client, chelsea_jpeg: bytes) -> None:
    response = http.post(
        "/v1/models/imagenet:predict", json={"instances": [{"b64": b64(chelsea_jpeg)}]}
    )
    assert response.status_code == 200, response.text
    (row,) = response.json()["predictions"]
    assert len(row) == 1000 and int(np.argmax(row)) == 285
    assert sum(row) == pytest.approx(1.0, abs=1e-3)


def test_curl_style_raw_image_and_multipart(
    http: httpx.Client, chelsea_jpeg: bytes, coffee_jpeg: bytes
) -> None:
    raw = http.post(
        "/v1/models/imagenet:classify?top_k=3",
        content=chelsea_jpeg,
        headers={"Content-Type": "image/jpeg"},
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["results"][0][0][0] == "Egyptian cat"
    assert len(raw.json()["results"][0]) == 3
    multi = http.post(
        "/v1/models/imagenet:classify",
        files=[
            ("file", ("cat.jpg", chelsea_jpeg, "image/jpeg")),
            ("file", ("cup.jpg", coffee_jpeg, "image/jpeg")),
        ],
    )
    assert multi.status_code == 200, multi.text
    assert [r[0][0] for r in multi.json()["results"]] == ["Egyptian cat", "espresso"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        (
            "post",
            "/v1/models/imagenet:classify",
            {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            "not valid JSON",
        ),
        (
            "post",
            "/v1/models/imagenet:classify",
            {"json": {"examples": [{"image": {"b64": "***"}}]}},
            400,
            "examples[0].image.b64",
        ),
        ("post", "/v1/models/imagenet:classify", {"json": {"examples": []}}, 400, "examples"),
        (
            "post",
            "/v1/models/imagenet:classify",
            {"json": {"examples": [{"image": {"b64": b64(b"text")}}]}},
            400,
            "could not decode",
        ),
        ("post", "/v1/models/nope:classify", {"json": {"examples": [{"x": 1}]}}, 404, "'nope'"),
        ("get", "/v1/models/imagenet/versions/7", {}, 404, "no version 7"),
        ("post", "/v1/models/imagenet:predict", {"json": {"instances": "x"}}, 400, "instances"),
        (
            "post",
            "/v1/models/imagenet:classify",
            {"content": b"\xff" * (21 * 1024 * 1024), "headers": {"Content-Type": "image/jpeg"}},
            413,
            "over the limit",
        ),
        ("get", "/v1/models/imagenet:classify", {}, 405, "POST"),
    ],
)
def test_tf_serving_errors(
    http: httpx.Client, method: str, path: str, kwargs: dict[str, object], status: int, words: str
) -> None:
    response = getattr(http, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


# -- Open Inference Protocol v2 over REST ----------------------------------------------


def test_v2_server_and_model_metadata(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    assert http.get("/v2").json()["name"] == "pyserving"
    meta = http.get("/v2/models/imagenet").json()
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]
    version = meta["versions"][-1]
    assert http.get(f"/v2/models/imagenet/versions/{version}/ready").json() == {"ready": True}
    assert http.get("/v2/models/nope/ready").status_code == 404


def test_v2_infer_json(http: httpx.Client, chelsea_jpeg: bytes, coffee_jpeg: bytes) -> None:
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "image",
                "shape": [2],
                "datatype": "BYTES",
                "data": [b64(chelsea_jpeg), b64(coffee_jpeg)],
            }
        ],
        "outputs": [
            {"name": "probabilities"},
            {"name": "probabilities", "parameters": {"classification": 2}},
        ],
    }
    response = http.post("/v2/models/imagenet/infer", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["id"] == "r1" and doc["model_name"] == "imagenet"
    probs, classes = doc["outputs"]
    assert probs["shape"] == [2, 1000] and probs["datatype"] == "FP32"
    rows = np.array(probs["data"]).reshape(2, 1000)
    assert rows.argmax(axis=1).tolist() == [285, 967]
    assert classes["datatype"] == "BYTES" and classes["shape"] == [2, 2]
    score, index, label = classes["data"][0].split(":", 2)
    assert (index, label) == ("285", "Egyptian cat") and float(score) == pytest.approx(
        rows[0, 285], abs=1e-5
    )


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        (
            [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}],
            "inputs[0].name is 'pixels'",
        ),
        (
            [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}],
            "datatype must be BYTES",
        ),
        (
            [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["aGk="]}],
            "shape [2] but 1 elements",
        ),
        (
            [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}],
            "not valid base64",
        ),
        ([{"name": "image", "shape": [1], "datatype": "BYTES"}], "inputs[0].data is missing"),
        ([{"shape": [1], "datatype": "BYTES", "data": []}], "inputs[0].name is missing"),
        ([{"name": "image", "shape": "x", "datatype": "BYTES", "data": []}], "shape must be"),
    ],
)
def test_v2_bad_input_names_the_field(
    http: httpx.Client, inputs: list[dict[str, object]], words: str
) -> None:
    response = http.post("/v2/models/imagenet/infer", json={"inputs": inputs})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_v2_unknown_model_and_version(http: httpx.Client) -> None:
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]}
    assert http.post("/v2/models/nope/infer", json=body).status_code == 404
    assert http.post("/v2/models/imagenet/versions/3/infer", json=body).status_code == 404


# -- Real clients nobody here wrote -----------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient(
    rest_server: tuple[RunningProcess, str, str], chelsea_jpeg: bytes, tmp_path: Path, protocol: str
) -> None:
    assert CLIENTS_PYTHON.exists(), "run `make test` (it builds .venv-clients with tritonclient)"
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(chelsea_jpeg)
    address = rest_server[1].removeprefix("http://") if protocol == "http" else rest_server[2]
    out = subprocess.run(
        [
            str(CLIENTS_PYTHON),
            str(ROOT / "tests" / "clients" / "triton_infer.py"),
            protocol,
            address,
            "imagenet",
            str(photo),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["live"] and answer["ready"]
    assert answer["metadata"]["platform"] == "onnx_onnxv1"
    config = answer["config"]
    assert (config["name"], config["platform"], int(config["max_batch_size"])) == (
        "imagenet",
        "onnxruntime_onnx",
        BatchingSettings().max_batch_size,
    )
    assert [(i["name"], i["data_type"]) for i in config["input"]] == [
        (answer["metadata"]["inputs"][0]["name"], "TYPE_STRING")
    ]
    assert [int(d) for d in config["output"][0]["dims"]] == [1000]
    assert answer["shape"] == [1, 1000] and answer["argmax"] == 285
    assert answer["sum"] == pytest.approx(1.0, abs=1e-3)
    assert answer["classes"][0].split(":", 2)[1:] == ["285", "Egyptian cat"]


# -- Metrics ----------------------------------------------------------------------------


def _counter(http: httpx.Client, api: str, code: str) -> float:
    text = http.get("/metrics").text
    return sum(
        metric_sum(text, "pyserving_requests_total", api=api, code=code, model=model)
        for model in ("imagenet", "")
    )


def _histogram_count(http: httpx.Client, name: str) -> float:
    return metric_sum(http.get("/metrics").text, f"{name}_count", model="imagenet")


def test_metrics_count_exactly_the_requests_sent(http: httpx.Client, chelsea_jpeg: bytes) -> None:
    stages = ("pyserving_queue_wait_seconds", "pyserving_preprocess_seconds")
    stages_before = {name: _histogram_count(http, name) for name in stages}
    batches_before = _histogram_count(http, "pyserving_batch_size")
    inferences_before = _histogram_count(http, "pyserving_inference_seconds")
    ok_before = _counter(http, "tfs_rest", "OK")
    bad_before = _counter(http, "tfs_rest", "INVALID_ARGUMENT")
    for _ in range(7):
        assert (
            http.post(
                "/v1/models/imagenet:classify",
                content=chelsea_jpeg,
                headers={"Content-Type": "image/jpeg"},
            ).status_code
            == 200
        )
    for _ in range(3):
        assert (
            http.post(
                "/v1/models/imagenet:classify",
                content=b"nope",
                headers={"Content-Type": "image/jpeg"},
            ).status_code
            == 400
        )
    assert _counter(http, "tfs_rest", "OK") - ok_before == 7
    assert _counter(http, "tfs_rest", "INVALID_ARGUMENT") - bad_before == 3
    for name in stages:  # one observation per image that was decoded and queued
        assert _histogram_count(http, name) - stages_before[name] == 7, name
    inferences = _histogram_count(http, "pyserving_inference_seconds") - inferences_before
    assert 1 <= inferences <= 7
    assert _histogram_count(http, "pyserving_batch_size") - batches_before == inferences
    names = {f.name for f in text_string_to_metric_families(http.get("/metrics").text)}
    assert {
        "pyserving_request_seconds",
        "pyserving_preprocess_seconds",
        "pyserving_inference_seconds",
        "pyserving_batch_size",
        "pyserving_loaded_versions",
        "pyserving_queue_depth",
        "pyserving_in_flight_requests",
    } <= names


def test_grpc_requests_are_counted_too(
    rest_server: tuple[RunningProcess, str, str], http: httpx.Client, chelsea_jpeg: bytes
) -> None:
    from pyserving.client import Client

    before = _counter(http, "grpc_classify", "OK")
    with Client(rest_server[2]) as client:
        for _ in range(4):
            client.classify(chelsea_jpeg)
    assert _counter(http, "grpc_classify", "OK") - before == 4


def test_openapi_document_describes_the_routes(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/v2/models/{name}/infer", "/v1/models/{name}:classify", "/v2/health/ready"):
        assert path in doc["paths"]


# -- A features model over REST --------------------------------------------------------


@pytest.fixture(scope="module")
def features_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("features") / "lin"
    weights = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    publish(base, 1, lambda f: write_features_servable(f, weights, ["a", "b"], ["A", "B", "C"]))
    port = free_port()
    server = start_server("lin", base, base.parent / "server.log", "--rest_api_port", str(port))
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_named_features_over_rest(features_server: str) -> None:
    with httpx.Client(base_url=features_server, timeout=30) as http:
        classify = http.post(
            "/v1/models/lin:classify",
            json={"examples": [{"a": 0.0, "b": 5.0}, {"a": [3.0], "b": 1.0}]},
        )
        assert classify.status_code == 200, classify.text
        assert [r[0][0] for r in classify.json()["results"]] == ["B", "A"]
        predict = http.post(
            "/v1/models/lin:predict", json={"instances": [[0.0, 5.0], {"a": 9.0, "b": 0.0}]}
        )
        assert np.argmax(predict.json()["predictions"], axis=1).tolist() == [1, 0]
        infer = http.post(
            "/v2/models/lin/infer",
            json={
                "inputs": [
                    {"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 5.0]}
                ]
            },
        )
        assert infer.status_code == 200, infer.text
        assert int(np.argmax(infer.json()["outputs"][0]["data"])) == 1
        missing = http.post("/v1/models/lin:classify", json={"examples": [{"a": 1.0}]})
        assert missing.status_code == 400 and "b" in missing.json()["error"]
        nan = http.post(
            "/v2/models/lin/infer",
            json={
                "inputs": [
                    {"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [0.0, "NaN"]}
                ]
            },
        )
        assert nan.status_code == 400
        wrong_shape = http.post(
            "/v2/models/lin/infer",
            json={
                "inputs": [
                    {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [0, 1, 2]}
                ]
            },
        )
        assert wrong_shape.status_code == 400 and "[N, 2]" in wrong_shape.json()["error"]


def test_schemathesis_finds_no_server_error(rest_server: tuple[RunningProcess, str, str]) -> None:
    """Fuzz every REST operation from the OpenAPI document (bounded), asserting no 500."""
    result = schemathesis(f"{rest_server[1]}/openapi.json")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
