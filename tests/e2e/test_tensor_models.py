"""Tensor models through the real server: an ONNX regression built here, exported with
`--kind tensor`, must answer exactly x W + b over OIP v2 (REST JSON and binary, gRPC, the
real tritonclient), TF Serving :predict and `pyserving predict`; bad inputs are refused
naming the input, classify is a failed precondition, and the server keeps serving."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import pytest

from pyserving._proto import grpc_predict_v2_pb2 as pb
from pyserving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from pyserving.cli.main import main
from pyserving.client import Client
from pyserving.errors import RemoteError
from tests.onnx_models import regression_model, sum_product_model
from tests.processes import RunningProcess, free_port, run_cli, schemathesis, start_serve

ROOT = Path(__file__).parent.parent.parent
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
RNG = np.random.default_rng(20240614)
W = RNG.normal(size=(3, 2)).astype(np.float32)
BIAS = RNG.normal(size=2).astype(np.float32)
MAX_REQUEST_MIB = 1


def expected(x: np.ndarray) -> np.ndarray:
    """x W + b in float64: the server's float32 answer must agree to float32 rounding."""
    return x.astype(np.float64) @ W.astype(np.float64) + BIAS.astype(np.float64)


def assert_regression(y: object, x: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(y, dtype=np.float64), expected(x), rtol=1e-5, atol=1e-5)


@dataclass
class Server:
    process: RunningProcess
    rest: str
    grpc: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("tensor")
    for name, model in [("reg", regression_model(W, BIAS)), ("sp", sum_product_model())]:
        onnx.save(model, str(root / f"{name}.onnx"))
        args = ["export", "onnx", str(root / f"{name}.onnx"), "--kind", "tensor"]
        assert main([*args, "--repository", str(root / "models"), "--name", name]) == 0
    config = root / "models.toml"
    config.write_text(
        "".join(
            f'[[models]]\nname = "{n}"\nbase_path = "{root / "models" / n}"\n'
            for n in ("reg", "sp")
        )
    )
    port = free_port()
    process = start_serve(
        root / "server.log",
        "--model_config_file",
        str(config),
        "--rest_api_port",
        str(port),
        "--max_request_mib",
        str(MAX_REQUEST_MIB),
    )
    yield Server(process, f"http://127.0.0.1:{port}", f"127.0.0.1:{process.match.group(1)}")
    process.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def v2(server: Server) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def test_v2_rest_json_and_binary_give_x_w_plus_b(http: httpx.Client) -> None:
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [5, 3], "data": x.tolist()}]}
    answer = http.post("/v2/models/reg/infer", json=body).json()
    (y,) = answer["outputs"]
    assert (y["name"], y["datatype"], y["shape"]) == ("y", "FP32", [5, 2])
    assert_regression(np.reshape(y["data"], (5, 2)), x)

    head = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [5, 3],
                "parameters": {"binary_data_size": 60},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    header = json.dumps(head).encode()
    response = http.post(
        "/v2/models/reg/infer",
        content=header + x.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    (out,) = json.loads(response.content[:length])["outputs"]
    assert out["parameters"] == {"binary_data_size": 40}
    assert_regression(np.frombuffer(response.content[length:], "<f4").reshape(5, 2), x)


def test_v2_grpc_typed_and_raw_give_x_w_plus_b(v2: pb_grpc.GRPCInferenceServiceStub) -> None:
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    typed = pb.ModelInferRequest(model_name="reg")
    typed.inputs.add(name="x", datatype="FP32", shape=[4, 3]).contents.fp32_contents.extend(
        x.ravel().tolist()
    )
    answer = v2.ModelInfer(typed, timeout=10)
    (out,) = answer.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("y", "FP32", [4, 2])
    assert_regression(np.array(out.contents.fp32_contents).reshape(4, 2), x)
    raw = pb.ModelInferRequest(model_name="reg")
    raw.inputs.add(name="x", datatype="FP32", shape=[4, 3])
    raw.raw_input_contents.append(x.astype("<f4").tobytes())
    answer = v2.ModelInfer(raw, timeout=10)
    assert_regression(np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(4, 2), x)
    meta = v2.ModelMetadata(pb.ModelMetadataRequest(name="sp"), timeout=10)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("a", "INT64", [-1]),
        ("b", "INT64", [-1]),
    ]
    assert [t.name for t in meta.outputs] == ["sum", "product"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient(server: Server, protocol: str) -> None:
    assert CLIENTS_PYTHON.exists(), "run `make test` (it builds .venv-clients with tritonclient)"
    address = server.rest.removeprefix("http://") if protocol == "http" else server.grpc
    out = subprocess.run(
        [
            str(CLIENTS_PYTHON),
            str(ROOT / "tests" / "clients" / "triton_tensors.py"),
            protocol,
            address,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert [i["name"] for i in answer["metadata"]["inputs"]] == ["a", "b"]
    assert [o["datatype"] for o in answer["metadata"]["outputs"]] == ["INT64", "INT64"]
    assert answer["y_dtype"] == "float32"
    assert_regression(answer["y"], np.array(answer["x"], dtype=np.float32))
    assert (answer["sum"], answer["product"]) == ([5, 7, 9], [4, 10, 18])


def test_tf_serving_predict_rows_and_columns(http: httpx.Client) -> None:
    x = RNG.normal(size=(3, 3)).astype(np.float32)
    rows = http.post("/v1/models/reg:predict", json={"instances": x.tolist()}).json()
    assert_regression(rows["predictions"], x)
    columns = http.post("/v1/models/reg:predict", json={"inputs": {"x": x.tolist()}}).json()
    assert_regression(columns["outputs"], x)
    sp = http.post("/v1/models/sp:predict", json={"instances": [{"a": 3, "b": -4}]}).json()
    assert sp == {"predictions": [{"sum": -1, "product": -12}]}
    sp = http.post("/v1/models/sp:predict", json={"inputs": {"a": [3, 5], "b": [2, 2]}}).json()
    assert sp == {"outputs": {"sum": [5, 7], "product": [6, 10]}}
    meta = http.get("/v1/models/reg/metadata").json()["metadata"]["signature_def"]
    inputs = meta["signature_def"]["serving_default"]["inputs"]
    assert inputs["x"]["dtype"] == "DT_FLOAT"
    assert inputs["x"]["tensor_shape"] == {"dim": [{"size": "-1"}, {"size": "3"}]}


def v2_body(*inputs: tuple[str, str, list[int], object]) -> dict[str, object]:
    return {"inputs": [{"name": n, "datatype": d, "shape": s, "data": v} for n, d, s, v in inputs]}


TOO_BIG = 300_000  # zeros: 600 kB of JSON, 1.2 MB as FP32, over --max_request_mib 1

REST_REFUSALS = [
    ("/v2/models/reg/infer", v2_body(("z", "FP32", [1, 3], [1, 2, 3])), "unknown input 'z'"),
    ("/v2/models/sp/infer", v2_body(("a", "INT64", [1], [1])), "missing input 'b'"),
    ("/v2/models/reg/infer", v2_body(("x", "INT64", [1, 3], [1, 2, 3])), "input 'x' is INT64"),
    ("/v2/models/reg/infer", v2_body(("x", "FP32", [1, 4], [1, 2, 3, 4])), "input 'x' has shape"),
    (
        "/v2/models/sp/infer",
        v2_body(("a", "INT64", [2], [1, 2]), ("b", "INT64", [3], [1, 2, 3])),
        "same size on axis 0, the batch: a has 2, b has 3",
    ),
    (
        "/v2/models/reg/infer",
        v2_body(("x", "FP32", [TOO_BIG // 3, 3], [0] * TOO_BIG)),
        "input 'x' is 1.1 MiB, over the limit of 1.0 MiB (--max_request_mib)",
    ),
    ("/v1/models/reg:predict", {"instances": [[1, 2]]}, "input 'x' has shape [1, 2]"),
    ("/v1/models/sp:predict", {"inputs": {"a": [1.5], "b": [1]}}, "input 'a': INT64 data must"),
    ("/v1/models/sp:predict", {"inputs": {"a": [1]}}, "missing input 'b'"),
    (
        "/v1/models/reg:predict",
        {"inputs": {"x": [[0] * 3] * (TOO_BIG // 3)}},
        "input 'x' is 1.1 MiB",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), REST_REFUSALS)
def test_bad_rest_inputs_are_400_naming_the_input(
    http: httpx.Client, path: str, body: dict[str, object], message: str
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_nan_is_refused_over_rest_and_grpc(
    http: httpx.Client, v2: pb_grpc.GRPCInferenceServiceStub
) -> None:
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,NaN,3]}]}'
    response = http.post("/v2/models/reg/infer", content=body)
    assert response.status_code == 400 and "input 'x' holds NaN or infinity" in response.text
    request = pb.ModelInferRequest(model_name="reg")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    request.raw_input_contents.append(np.array([[1, 2, np.inf]], "<f4").tobytes())
    with pytest.raises(grpc.RpcError) as info:
        v2.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "input 'x' holds NaN or infinity (first at [0, 2])" in info.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "message"),
    [
        ("x", "FP64", [1, 3], "input 'x' is FP64; the model takes FP32"),
        ("x", "FP32", [3, 1], "input 'x' has shape [3, 1]"),
        ("w", "FP32", [1, 3], "unknown input 'w'"),
    ],
)
def test_bad_grpc_inputs_are_invalid_arguments_naming_the_input(
    v2: pb_grpc.GRPCInferenceServiceStub, name: str, datatype: str, shape: list[int], message: str
) -> None:
    request = pb.ModelInferRequest(model_name="reg")
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(
        np.zeros(shape, "<f8" if datatype == "FP64" else "<f4").tobytes()
    )
    with pytest.raises(grpc.RpcError) as info:
        v2.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert message in info.value.details()  # type: ignore[attr-defined]


def test_classify_on_a_tensor_model_says_to_use_predict(server: Server, http: httpx.Client) -> None:
    with Client(server.grpc) as client, pytest.raises(RemoteError) as info:
        client.classify(b"1,2,3", model_name="reg")
    assert info.value.grpc_code == "FAILED_PRECONDITION" and "use predict" in str(info.value)
    response = http.post("/v1/models/reg:classify", json={"examples": [{"x": [1, 2, 3]}]})
    assert response.status_code == 400 and "use predict" in response.json()["error"]
    asked = {
        **v2_body(("x", "FP32", [1, 3], [1, 2, 3])),
        "outputs": [{"name": "y", "parameters": {"classification": 1}}],
    }
    response = http.post("/v2/models/reg/infer", json=asked)
    assert response.status_code == 400 and "not a classifier" in response.json()["error"]
    # The server kept serving through every refusal above.
    x = np.ones((1, 3), np.float32)
    answer = http.post(
        "/v2/models/reg/infer", json=v2_body(("x", "FP32", [1, 3], x.tolist()))
    ).json()
    assert_regression(np.reshape(answer["outputs"][0]["data"], (1, 2)), x)
    assert server.process.process.poll() is None


def test_pyserving_predict(server: Server, tmp_path: Path) -> None:
    out = run_cli("predict", "--server", server.grpc, "--model", "reg", "--input", "x=1,2,3,4,5,6")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("model reg, version ") and lines[1] == "y  FP32 [2, 2]"
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    assert_regression(json.loads(lines[2]), x)

    np.save(tmp_path / "x.npy", x[::-1].astype(np.float64))  # cast to FP32 by the CLI
    out = run_cli(
        "predict",
        "--server",
        server.grpc,
        "--model",
        "reg",
        "--input",
        f"x={tmp_path / 'x.npy'}",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    (y,) = json.loads(out.stdout)["outputs"]
    assert (y["name"], y["shape"]) == ("y", [2, 2])
    assert_regression(y["data"], x[::-1])

    args = ["predict", "--server", server.grpc, "--model", "sp", "--json"]
    out = run_cli(*args, "--input", "a=2,3", "--input", "b=10,20")
    assert out.returncode == 0, out.stderr
    outputs = {o["name"]: o["data"] for o in json.loads(out.stdout)["outputs"]}
    assert outputs == {"sum": [12, 23], "product": [20, 60]}
    out = run_cli(*args, "--input", "a=2,3", "--input", "b=1.5,2")
    assert out.returncode == 2 and "input 'b' is INT64: '1.5' is not one" in out.stderr
    out = run_cli(*args, "--input", "a=2,3", "--input", "b=1")
    assert out.returncode == 1 and "same size on axis 0" in out.stderr
    out = run_cli("classify", "--server", server.grpc, "--model", "reg", "--text", "1,2,3")
    assert out.returncode == 1 and "use predict" in out.stderr


def test_the_web_app_says_a_tensor_model_does_not_classify(server: Server) -> None:
    from starlette.testclient import TestClient

    from pyserving.web.app import create_app

    with TestClient(create_app(server.grpc, models=["reg", "sp"])) as client:
        upload = ("images", ("x.jpg", b"\xff\xd8\xff tiny", "image/jpeg"))
        response = client.post("/api/classify", files=[upload], data={"model": "reg"})
    assert response.status_code == 400
    (result,) = response.json()["results"]
    assert result["code"] == "FAILED_PRECONDITION" and "use predict" in result["error"]


def test_schemathesis_finds_no_server_error(server: Server) -> None:
    """Fuzz every REST operation against the tensor models (bounded), asserting no 500."""
    result = schemathesis(f"{server.rest}/openapi.json")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
