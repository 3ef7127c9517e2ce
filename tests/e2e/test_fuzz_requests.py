"""Property tests against a real server: fuzzed REST bodies and gRPC tensors, every kind
(tensor models included).

The property: an answer with a 4xx status (REST) or a code that is not INTERNAL, UNKNOWN or
DATA_LOSS (gRPC), never a 5xx or an unexpected exception, and the next good request is
still answered. Counts are bounded and fixed in CI; `FUZZ_EXAMPLES` scales them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving._proto import grpc_predict_v2_pb2 as v2
from pyserving._proto import grpc_predict_v2_pb2_grpc as v2_grpc
from tests.onnx_models import (
    png,
    publish,
    regression_model,
    sum_product_model,
    write_features_servable,
    write_image_servable,
    write_text_servable,
)
from tests.processes import RunningProcess, free_port, run_cli, start_serve

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))
MODELS = ("colours", "lin", "letters", "speech", "reg", "sp")
SERVER_ERRORS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
RED = png((230, 0, 0))


def examples(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningProcess, str, str]]:
    """Every kind behind one server: its process, gRPC address and REST URL."""
    root = tmp_path_factory.mktemp("fuzz")
    publish(root / "colours", 1, write_image_servable)
    weights = np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)
    publish(root / "lin", 1, lambda f: write_features_servable(f, weights, ["a", "b"]))
    publish(root / "letters", 1, write_text_servable)
    export = ["export", "silero-vad", "--repository", str(root), "--name", "speech"]
    run_cli(*export, check=True, timeout=120)
    onnx.save(regression_model(weights, np.zeros(2, np.float32)), root / "reg.onnx")
    onnx.save(sum_product_model(), root / "sp.onnx")
    for name in ("reg", "sp"):
        tensor = ["export", "onnx", str(root / f"{name}.onnx"), "--kind", "tensor"]
        tensor += ["--repository", str(root), "--name", name]
        run_cli(*tensor, check=True, timeout=120)
    config = root / "models.toml"
    config.write_text(
        "".join(f'[[models]]\nname = "{m}"\nbase_path = "{root / m}"\n' for m in MODELS)
    )
    port = free_port()
    process = start_serve(
        root / "server.log",
        "--model_config_file",
        str(config),
        "--rest_api_port",
        str(port),
        "--max_request_mib",
        "1",
        "--max_audio_seconds",
        "5",
    )
    yield process, f"127.0.0.1:{process.match.group(1)}", f"http://127.0.0.1:{port}"
    assert process.stop() == 0, process.output()
    log = process.output()
    assert "unexpected error" not in log and "Traceback" not in log, log


@pytest.fixture(scope="module")
def http(server: tuple[RunningProcess, str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[2], timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: tuple[RunningProcess, str, str]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server[1]) as c:
        yield c


def still_answers(http: httpx.Client) -> None:
    good = http.post(
        "/v1/models/colours:classify", content=RED, headers={"Content-Type": "image/png"}
    )
    assert good.status_code == 200, good.text


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(["b64", "aGVsbG8=", "a", "b", "image", "text", "BYTES", "FP32"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["b64", "instances", "inputs", "examples", "a", "b", "text"]),
                st.text(max_size=6),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=16,
)


@st.composite
def tf_bodies(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(["instances", "inputs", "examples", "signature_name", "x"]))
    body: dict[str, Any] = {key: draw(json_values)}
    if draw(st.booleans()):
        body["top_k"] = draw(json_values)
    return body


@examples(300)
@given(
    model=st.sampled_from(MODELS),
    verb=st.sampled_from([":predict", ":classify", "/metadata", ""]),
    body=st.one_of(tf_bodies(), json_values),
)
def test_tf_serving_json(http: httpx.Client, model: str, verb: str, body: Any) -> None:
    answer = http.post(f"/v1/models/{model}{verb}", content=json.dumps(body).encode())
    assert answer.status_code < 500, answer.text
    still_answers(http)


CONTENT_TYPES = [
    "image/png",
    "text/plain",
    "audio/wav",
    "application/json",
    "application/octet-stream",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "",
]


@examples(200)
@given(
    model=st.sampled_from(MODELS),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=st.binary(max_size=1024),
)
def test_raw_bodies(http: httpx.Client, model: str, content_type: str, body: bytes) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = http.post(f"/v1/models/{model}:classify", content=body, headers=headers)
    assert answer.status_code < 500, answer.text
    still_answers(http)


DATATYPES = ["BYTES", "FP32", "FP64", "FP16", "INT64", "INT32", "UINT8", "BOOL", "X", ""]
shapes = st.lists(st.integers(-2, 2**40), max_size=4) | st.lists(st.integers(0, 4), max_size=3)


@st.composite
def v2_tensors(draw: st.DrawFn, binary: bool) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["image", "features", "text", "samples", "x", "a", "b", ""])),
        "datatype": draw(st.sampled_from(DATATYPES)),
        "shape": draw(st.one_of(shapes, json_values)),
    }
    if binary:
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-1, 2000))}
    elif draw(st.booleans()):
        tensor["data"] = draw(json_values)
    if draw(st.booleans()):
        del tensor[draw(st.sampled_from(["name", "datatype", "shape"]))]
    return tensor


@st.composite
def v2_bodies(draw: st.DrawFn, binary: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": draw(st.lists(v2_tensors(binary), max_size=3))}
    if draw(st.booleans()):
        body["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["probabilities", "x"])},
                    optional={"parameters": json_values},
                ),
                max_size=2,
            )
            | json_values
        )
    if draw(st.booleans()):
        body = {**body, "inputs": draw(json_values)}
    return body


@examples(300)
@given(model=st.sampled_from(MODELS), body=v2_bodies(binary=False))
def test_v2_json(http: httpx.Client, model: str, body: dict[str, Any]) -> None:
    answer = http.post(f"/v2/models/{model}/infer", content=json.dumps(body).encode())
    assert answer.status_code < 500, answer.text
    still_answers(http)


@examples(200)
@given(
    model=st.sampled_from(MODELS),
    body=v2_bodies(binary=True),
    tail=st.binary(max_size=512),
    header_length=st.one_of(
        st.none(),
        st.integers(-5, 3000),
        st.text(alphabet="0123456789-+.xe", min_size=1, max_size=4),
    ),
)
def test_v2_binary_extension(
    http: httpx.Client, model: str, body: dict[str, Any], tail: bytes, header_length: Any
) -> None:
    head = json.dumps(body).encode()
    length = len(head) if header_length is None else header_length
    answer = http.post(
        f"/v2/models/{model}/infer",
        content=head + tail,
        headers={"Inference-Header-Content-Length": str(length)},
    )
    assert answer.status_code < 500, answer.text
    still_answers(http)


@st.composite
def grpc_tensors(draw: st.DrawFn) -> v2.ModelInferRequest.InferInputTensor:
    tensor = v2.ModelInferRequest.InferInputTensor(
        name=draw(st.sampled_from(["image", "features", "text", "samples", "x", "a", "b", ""])),
        datatype=draw(st.sampled_from(DATATYPES)),
        shape=draw(st.lists(st.integers(-(2**62), 2**62), max_size=4) | shapes),
    )
    field = draw(st.sampled_from(["none", "bytes", "fp32", "int64", "fp64", "bool"]))
    if field == "bytes":
        tensor.contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=256), max_size=4)))
    elif field == "fp32":
        tensor.contents.fp32_contents.extend(
            draw(st.lists(st.floats(width=32, allow_nan=True), max_size=8))
        )
    elif field == "int64":
        tensor.contents.int64_contents.extend(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8))
        )
    elif field == "fp64":
        tensor.contents.fp64_contents.extend(draw(st.lists(st.floats(), max_size=8)))
    elif field == "bool":
        tensor.contents.bool_contents.extend(draw(st.lists(st.booleans(), max_size=8)))
    return tensor


@examples(300)
@given(
    model=st.sampled_from([*MODELS, "", "nope"]),
    version=st.sampled_from(["", "1", "x", "-1", "99999999999999999999"]),
    tensors=st.lists(grpc_tensors(), max_size=3),
    raw=st.lists(st.binary(max_size=512), max_size=3),
)
def test_v2_grpc_tensors(
    channel: grpc.Channel,
    http: httpx.Client,
    model: str,
    version: str,
    tensors: list[Any],
    raw: list[bytes],
) -> None:
    request = v2.ModelInferRequest(model_name=model, model_version=version, inputs=tensors)
    if raw:
        for tensor in request.inputs:
            tensor.ClearField("contents")
        request.raw_input_contents.extend(raw)
    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    try:
        stub.ModelInfer(request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() not in SERVER_ERRORS, (exc.code(), exc.details())
    still_answers(http)


@examples(200)
@given(
    model=st.sampled_from([*MODELS, "", "nope"]),
    data=st.binary(max_size=2048),
    features=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(width=32), max_size=3),
    top_k=st.integers(0, 2**32 - 1),
)
def test_classification_service(
    channel: grpc.Channel,
    http: httpx.Client,
    model: str,
    data: bytes,
    features: dict[str, float],
    top_k: int,
) -> None:
    request = pb.ClassificationRequest(input=data, model_name=model, top_k=top_k, features=features)
    try:
        pb_grpc.ClassificationServiceStub(channel).classify(request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() not in SERVER_ERRORS, (exc.code(), exc.details())
    still_answers(http)
