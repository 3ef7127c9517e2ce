"""Tensor models in process: `Service.infer`, and the v2 and TF Serving adapters on it.

Real models exported with `export_onnx_tensor`, a real in-process grpc.aio server and the
REST app over ASGI; the whole server is exercised in tests/e2e/test_tensor_models.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import pytest

from pyserving._proto import classification_pb2 as cls_pb
from pyserving._proto import classification_pb2_grpc as cls_grpc
from pyserving._proto import grpc_predict_v2_pb2 as pb
from pyserving._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from pyserving._proto import tensorflow_serving_apis_pb2 as tfs_pb
from pyserving._proto import tensorflow_serving_apis_pb2_grpc as tfs_grpc
from pyserving.core import metrics
from pyserving.core.manager import ModelManager
from pyserving.core.service import Batch, Service
from pyserving.core.settings import ModelConfig, Settings
from pyserving.engines import EngineOptions
from pyserving.engines import openvino as ov_engine
from pyserving.engines.choice import Wanted, choose_engine
from pyserving.errors import InvalidInput, ServableError, WrongMethod
from pyserving.export.onnx_tensor import export_onnx_tensor
from pyserving.grpc_api.tfs_tensors import to_array, to_proto
from pyserving.kinds import load_signature, tensor
from pyserving.reference import load_tensor_reference, write_tensor_reference
from pyserving.rest_api.app import create_rest_app
from pyserving.results import ModelMetadata
from pyserving.signature import MODEL_FILE
from tests.onnx_models import (
    datatypes_model,
    publish,
    regression_model,
    sum_product_model,
    write_features_servable,
)

RNG = np.random.default_rng(2024)
W = RNG.normal(size=(3, 2)).astype(np.float32)
BIAS = RNG.normal(size=2).astype(np.float32)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """`reg` (x [N, 3] → y = x W + b), `sp` (a, b int64 [N] → sum, product), `types`
    (strings, halves, booleans) and the classifier `lin`."""
    for name, model in [
        ("reg", regression_model(W, BIAS)),
        ("sp", sum_product_model()),
        ("types", datatypes_model()),
    ]:
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        export_onnx_tensor(tmp_path / f"{name}.onnx", tmp_path / "models", name)
    weights = np.eye(2, dtype=np.float32)
    publish(tmp_path / "lin", 1, lambda f: write_features_servable(f, weights, ["a", "b"], "AB"))
    settings = Settings(
        models=(
            *(ModelConfig(n, tmp_path / "models" / n) for n in ("reg", "sp", "types")),
            ModelConfig("lin", tmp_path / "lin"),
        ),
        file_system_poll_wait_seconds=0,
        max_request_bytes=64 * 1024,
    )
    with ThreadPoolExecutor(2) as pool:
        manager = ModelManager(settings, pool)
        await manager.start()
        try:
            yield Service(manager, pool, settings)
        finally:
            await manager.stop()


def tensors(**named: np.ndarray) -> Callable[[ModelMetadata], Awaitable[tuple[Batch, None]]]:
    async def parse(model: ModelMetadata) -> tuple[Batch, None]:
        return Batch(tensors=named), None

    return parse


def counted(api: str, code: str, model: str) -> float:
    labels = {"api": api, "code": code, "model": model}
    samples = metrics.REGISTRY.collect()
    return sum(
        s.value
        for family in samples
        if family.name == "pyserving_requests"
        for s in family.samples
        if s.name == "pyserving_requests_total" and all(s.labels[k] == v for k, v in labels.items())
    )


async def test_infer_gives_every_output_and_is_counted(service: Service) -> None:
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    before = counted("t_tensor", "OK", "reg")
    answer, rest = await service.infer("t_tensor", "reg", 0, tensors(x=x))
    assert rest is None and answer.model_name == "reg" and answer.model_version > 0
    np.testing.assert_allclose(answer.tensors["y"], x @ W + BIAS, rtol=1e-5, atol=1e-6)
    a, b = np.array([2, 3]), np.array([5, 7])
    both, _ = await service.infer("t_tensor", "sp", 0, tensors(a=a, b=b))
    assert list(both.tensors) == ["sum", "product"]
    assert both.tensors["sum"].tolist() == [7, 10] and both.tensors["product"].tolist() == [10, 21]
    assert counted("t_tensor", "OK", "reg") - before == 1
    meta = service.metadata("sp")
    assert meta.answers == "tensors" and [t.name for t in meta.outputs] == ["sum", "product"]
    assert service.takes_tensors("sp") and not service.takes_tensors("lin")
    assert not service.takes_tensors("nope")  # the request itself then says NOT_FOUND


async def test_concurrent_requests_share_calls_and_get_their_own_rows(service: Service) -> None:
    xs = [RNG.normal(size=(n, 3)).astype(np.float32) for n in (1, 2, 3, 1, 5, 2, 1, 4)]
    answers = await asyncio.gather(*(service.infer("t", "reg", 0, tensors(x=x)) for x in xs))
    for x, (answer, _) in zip(xs, answers, strict=True):
        np.testing.assert_allclose(answer.tensors["y"], x @ W + BIAS, rtol=1e-5, atol=1e-6)


async def test_the_wrong_method_is_refused_both_ways(service: Service) -> None:
    before = counted("t_wrong", "FAILED_PRECONDITION", "reg")
    with pytest.raises(WrongMethod, match="'reg' is a tensor model, not a classifier: use predict"):
        await service.predict("t_wrong", "reg", 0, tensors(x=np.ones((1, 3), np.float32)))
    with pytest.raises(WrongMethod, match="'lin' is a classifier"):
        await service.infer("t_wrong", "lin", 0, tensors(features=np.ones((1, 2), np.float32)))
    assert counted("t_wrong", "FAILED_PRECONDITION", "reg") - before == 1
    with pytest.raises(InvalidInput, match="input 'x' is FP64"):
        await service.infer("t", "reg", 0, tensors(x=np.ones((1, 3))))
    answer, _ = await service.infer("t", "reg", 0, tensors(x=np.ones((1, 3), np.float32)))
    assert answer.tensors["y"].shape == (1, 2)  # still serving


@pytest.fixture
async def rest(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    app = create_rest_app(service, max_request_bytes=64 * 1024)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://rest"
    ) as client:
        yield client


async def test_v2_rest_json_binary_strings_halves_and_booleans(rest: httpx.AsyncClient) -> None:
    body = {
        "inputs": [
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["kočka", {"b64": "ZG9n"}]},
            {"name": "h", "datatype": "FP16", "shape": [2], "data": [0.5, -2]},
            {"name": "f", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        ]
    }
    answer = (await rest.post("/v2/models/types/infer", json=body)).json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["text"] == {
        "name": "text",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["kočka", "dog"],
    }
    assert outputs["half"]["datatype"] == "FP16" and outputs["half"]["data"] == [0.5, -2.0]
    assert outputs["flag"]["data"] == [False, True]
    # Binary: the inputs after the JSON header, and the one output asked for back as bytes.
    head = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [2, 3],
                "parameters": {"binary_data_size": 24},
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    header = json.dumps(head).encode()
    x = np.arange(6, dtype="<f4").reshape(2, 3)
    response = await rest.post(
        "/v2/models/reg/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    out_head = json.loads(response.content[:length])
    assert out_head["outputs"][0]["parameters"] == {"binary_data_size": 16}
    y = np.frombuffer(response.content[length:], "<f4").reshape(2, 2)
    np.testing.assert_allclose(y, x @ W + BIAS, rtol=1e-5, atol=1e-6)


async def test_v2_rest_refusals_name_the_input(rest: httpx.AsyncClient) -> None:
    def one(name: str, datatype: str, shape: list[int], data: object) -> dict[str, object]:
        return {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}

    cases = [
        (one("x", "INT32", [1, 3], [1, 2, 3]), 400, "input 'x' is INT32; the model takes FP32"),
        (one("q", "FP32", [1, 3], [1, 2, 3]), 400, "unknown input 'q'"),
        (one("x", "FP32", [3], [1, 2, 3]), 400, "input 'x' has shape [3]"),
        (
            {**one("x", "FP32", [1, 3], [1, 2, 3]), "outputs": [{"name": "z"}]},
            400,
            "unknown output 'z'",
        ),
        (
            {
                **one("x", "FP32", [1, 3], [1, 2, 3]),
                "outputs": [{"name": "y", "parameters": {"classification": 2}}],
            },
            400,
            "not a classifier",
        ),
        (one("x", "FP32", [10000, 3], [0] * 30000), 400, "input 'x' is 120,000 bytes, over"),
    ]
    for body, status, message in cases:
        response = await rest.post("/v2/models/reg/infer", json=body)
        assert response.status_code == status and message in response.json()["error"], body
    nan = await rest.post(
        "/v2/models/reg/infer",
        content=b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,NaN,3]}]}',
    )
    assert nan.status_code == 400 and "input 'x' holds NaN" in nan.json()["error"]


async def test_tf_serving_predict_rows_and_columns(rest: httpx.AsyncClient) -> None:
    rows = await rest.post("/v1/models/reg:predict", json={"instances": [[1, 2, 3], [0, 0, 1]]})
    expected = np.array([[1, 2, 3], [0, 0, 1]], np.float32) @ W + BIAS
    np.testing.assert_allclose(rows.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
    named = await rest.post("/v1/models/reg:predict", json={"instances": [{"x": [1, 2, 3]}]})
    np.testing.assert_allclose(named.json()["predictions"], expected[:1], rtol=1e-5, atol=1e-6)
    columns = await rest.post("/v1/models/reg:predict", json={"inputs": [[1, 2, 3]]})
    np.testing.assert_allclose(columns.json()["outputs"], expected[:1], rtol=1e-5, atol=1e-6)
    sp_rows = await rest.post(
        "/v1/models/sp:predict", json={"instances": [{"a": 2, "b": 3}, {"a": 4, "b": 5}]}
    )
    assert sp_rows.json() == {"predictions": [{"sum": 5, "product": 6}, {"sum": 9, "product": 20}]}
    sp_columns = await rest.post(
        "/v1/models/sp:predict", json={"inputs": {"a": [2, 4], "b": [3, 5]}}
    )
    assert sp_columns.json() == {"outputs": {"sum": [5, 9], "product": [6, 20]}}
    meta = (await rest.get("/v1/models/sp/metadata")).json()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["a"] == {
        "dtype": "DT_INT64",
        "tensor_shape": {"dim": [{"size": "-1"}]},
        "name": "a",
    }
    assert set(signature["outputs"]) == {"sum", "product"}


async def test_tf_serving_refusals(rest: httpx.AsyncClient) -> None:
    cases = [
        (
            "sp",
            {"instances": [{"a": 1, "b": 2}, {"a": 1}]},
            "instances[1] must name the same inputs",
        ),
        ("sp", {"inputs": {"a": [1.5], "b": [1]}}, "input 'a': INT64 data must be integers"),
        ("sp", {"inputs": [1, 2]}, "`inputs` must be an object of named values: a, b"),
        ("sp", {"inputs": {"a": [1], "c": [1]}}, "unknown input 'c'"),
        ("sp", {"instances": [{"a": 1, "b": 2}], "inputs": {}}, "one of them"),
        ("reg", {"instances": [[1, 2]]}, "input 'x' has shape [1, 2]"),
    ]
    for model, body, message in cases:
        response = await rest.post(f"/v1/models/{model}:predict", json=body)
        assert response.status_code == 400 and message in response.json()["error"], body
    classify = await rest.post("/v1/models/reg:classify", json={"examples": [{"x": 1.0}]})
    assert classify.status_code == 400 and "use predict" in classify.json()["error"]


async def test_v2_grpc_typed_contents_and_raw(grpc_channel: grpc.aio.Channel) -> None:
    api = pb_grpc.GRPCInferenceServiceStub(grpc_channel)
    request = pb.ModelInferRequest(model_name="sp")
    request.inputs.add(name="a", datatype="INT64", shape=[2]).contents.int64_contents.extend([3, 4])
    request.inputs.add(name="b", datatype="INT64", shape=[2]).contents.int64_contents.extend([5, 6])
    answer = await api.ModelInfer(request)
    assert [(o.name, list(o.contents.int64_contents)) for o in answer.outputs] == [
        ("sum", [8, 10]),
        ("product", [15, 24]),
    ]
    # FP16 has no typed field: the answer comes back raw.
    halves = pb.ModelInferRequest(model_name="types")
    halves.inputs.add(name="s", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"a")
    halves.inputs.add(name="f", datatype="BOOL", shape=[1]).contents.bool_contents.append(True)
    halves.inputs.add(name="h", datatype="FP16", shape=[1])
    halves.raw_input_contents.extend(
        [b"\x01\x00\x00\x00a", b"\x01", np.array([1.5], "<f2").tobytes()]
    )
    answer = await api.ModelInfer(halves)
    assert [o.name for o in answer.outputs] == ["text", "half", "flag"]
    assert np.frombuffer(answer.raw_output_contents[1], "<f2").tolist() == [1.5]
    assert answer.raw_output_contents[2] == b"\x00"
    meta = await api.ModelMetadata(pb.ModelMetadataRequest(name="sp"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("sum", "INT64", [-1]),
        ("product", "INT64", [-1]),
    ]


async def test_grpc_classify_on_a_tensor_model_is_a_failed_precondition(
    grpc_channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await cls_grpc.ClassificationServiceStub(grpc_channel).classify(
            cls_pb.ClassificationRequest(model_name="reg", input=b"1,2,3")
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "use predict" in (info.value.details() or "")
    request = pb.ModelInferRequest(model_name="reg")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend(
        [1, 2]
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pb_grpc.GRPCInferenceServiceStub(grpc_channel).ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'x' has shape [1, 2]" in (info.value.details() or "")


def choose(version: Path, wanted: Wanted) -> tuple[str, str]:
    sig = load_signature(version)
    choice = choose_engine(
        version / MODEL_FILE,
        wanted,
        EngineOptions(),
        sig.input_name,
        sig.output_name,
        lambda info: tensor.warm_up(sig, ()),
        load_tensor_reference(version),
        False,
        False,
        tensor.OUTPUT.run,
    )
    choice.engine.close()
    return choice.engine.info.name, choice.precision


@pytest.mark.skipif("bf16" not in ov_engine.precisions(), reason="this CPU has no bf16")
def test_auto_keeps_f32_and_bf16_is_verified_on_the_reference_set(tmp_path: Path) -> None:
    onnx.save(regression_model(W, BIAS), str(tmp_path / "reg.onnx"))
    version = export_onnx_tensor(tmp_path / "reg.onnx", tmp_path / "models", "reg")
    assert choose(version, Wanted())[1] == "f32"
    assert choose(version, Wanted("openvino", "bf16")) == ("openvino", "bf16")
    reference = load_tensor_reference(version)
    assert reference is not None
    wrong = {"y": reference.outputs["y"] + 1}
    write_tensor_reference(version, reference.inputs, wrong)
    with pytest.raises(ServableError, match="reference set fails with openvino bf16: output 'y'"):
        choose(version, Wanted("openvino", "bf16"))


async def test_tf_serving_grpc_predict_gives_every_output_of_a_tensor_model(
    grpc_channel: grpc.aio.Channel,
) -> None:
    api = tfs_grpc.PredictionServiceStub(grpc_channel)
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    request = tfs_pb.PredictRequest(model_spec=tfs_pb.ModelSpec(name="reg"))
    request.inputs["x"].CopyFrom(to_proto(x))
    answer = await api.Predict(request)
    assert list(answer.outputs) == ["y"]
    np.testing.assert_allclose(
        to_array(answer.outputs["y"], "y"), x @ W + BIAS, rtol=1e-5, atol=1e-6
    )

    two = tfs_pb.PredictRequest(model_spec=tfs_pb.ModelSpec(name="sp"))
    two.inputs["a"].CopyFrom(to_proto(np.array([1, 2], np.int64)))
    two.inputs["b"].CopyFrom(to_proto(np.array([3, 4], np.int64)))
    two.output_filter.append("product")
    answer = await api.Predict(two)
    assert list(answer.outputs) == ["product"]
    assert to_array(answer.outputs["product"], "product").tolist() == [3, 8]

    wrong = tfs_pb.PredictRequest(model_spec=tfs_pb.ModelSpec(name="reg"))
    wrong.inputs["z"].CopyFrom(to_proto(x))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.Predict(wrong)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'x'" in str(info.value.details()) or "'z'" in str(info.value.details())
