"""Explanations in process, with real tiny models: each kind's parts and weights, the
adapters' answers, and every way a request is refused."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import pytest
from PIL import Image

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.core import metrics
from pyserving.core.manager import ModelManager
from pyserving.core.service import Service
from pyserving.core.settings import ModelConfig, Settings
from pyserving.errors import InvalidInput, QueueFull, WrongMethod
from pyserving.export.onnx_tensor import export_onnx_tensor
from pyserving.grpc_api.classification import ClassificationApi
from pyserving.kinds import write_signature
from pyserving.kinds.features import FeatureFields
from pyserving.rest_api.app import create_rest_app
from pyserving.results import ClassifyRequest, Example, ModelMetadata
from pyserving.signature import MODEL_FILE, Signature
from tests.onnx_models import (
    linear_model,
    publish,
    regression_model,
    write_features_servable,
    write_image_servable,
    write_text_servable,
)

SIZE = 32  # the colours model's input: 32×32, an 8×8 grid of 4×4 cells


def write_lin_with_reference(folder: Path) -> Path:
    """`lin` (logits = [a, b]) with reference values (0, 0), as an exporter records them."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(linear_model(np.eye(2, dtype=np.float32)), str(folder / MODEL_FILE))
    write_signature(
        Signature(
            kind="features",
            input_name="features",
            input_dtype="float32",
            output_name="logits",
            scores="logits",
            labels=("A", "B"),
            fields=FeatureFields(("a", "b"), (0.0, 0.0)),
        ),
        folder,
    )
    return folder


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """`colours` (image), `letters` (text), `lin` (features with reference values), `old`
    (features without them) and `reg` (a tensor model); explanations up to 70 inputs."""
    publish(tmp_path / "colours", 1, lambda f: write_image_servable(f, size=SIZE))
    publish(tmp_path / "letters", 1, write_text_servable)
    publish(tmp_path / "lin", 1, write_lin_with_reference)
    eye = np.eye(2, dtype=np.float32)
    publish(tmp_path / "old", 1, lambda f: write_features_servable(f, eye, ["a", "b"], "AB"))
    onnx.save(regression_model(eye, np.zeros(2, np.float32)), str(tmp_path / "reg.onnx"))
    export_onnx_tensor(tmp_path / "reg.onnx", tmp_path / "models", "reg")
    names = ("colours", "letters", "lin", "old")
    settings = Settings(
        models=(
            *(ModelConfig(n, tmp_path / n) for n in names),
            ModelConfig("reg", tmp_path / "models" / "reg"),
        ),
        file_system_poll_wait_seconds=0,
        max_explain_inputs=70,
    )
    with ThreadPoolExecutor(2) as pool:
        manager = ModelManager(settings, pool)
        await manager.start()
        try:
            yield Service(manager, pool, settings)
        finally:
            await manager.stop()


def given(
    example: Example, class_name: str = ""
) -> Callable[[ModelMetadata], Awaitable[tuple[Example, str]]]:
    async def parse(model: ModelMetadata) -> tuple[Example, str]:
        return example, class_name

    return parse


def one(example: Example) -> Callable[[ModelMetadata], Awaitable[ClassifyRequest]]:
    async def parse(model: ModelMetadata) -> ClassifyRequest:
        return ClassifyRequest((example,))

    return parse


def halves(left: tuple[int, int, int], right: tuple[int, int, int]) -> bytes:
    """A SIZE×SIZE PNG: one colour left of the grid's fourth column edge, another right."""
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[:, :16] = left
    pixels[:, 16:] = right
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def counted(api: str, code: str, model: str, version: str = "") -> float:
    labels = {"model": model, "version": version, "api": api, "code": code}
    return metrics.REGISTRY.get_sample_value("pyserving_requests_total", labels) or 0.0


async def test_an_image_is_explained_cell_by_cell(service: Service) -> None:
    before = counted("t_explain", "OK", "colours", "1")
    image = halves((8, 0, 0), (0, 0, 8))  # dim: the logits are the mean channels
    answer = await service.explain("t_explain", "colours", 0, given(Example(image), "red"))
    assert (answer.model_name, answer.model_version, answer.kind) == ("colours", 1, "image")
    assert answer.explained.name == "red" and answer.grid == (8, 8)
    assert [(p.row, p.column) for p in answer.parts] == [(r, c) for r in range(8) for c in range(8)]
    assert "blurred" in answer.method
    weights = np.array([p.weight for p in answer.parts]).reshape(8, 8)
    # The model is the mean colour: blurring the cells at the border mixes red and blue, so
    # red falls left of it and rises right of it; cells away from it change nothing.
    assert (weights[:, 3] > 1e-4).all() and (weights[:, 4] < -1e-4).all()
    assert np.abs(weights[:, [0, 7]]).max() < 1e-6
    assert counted("t_explain", "OK", "colours", "1") == before + 1


async def test_the_top_class_is_explained_when_none_is_named(service: Service) -> None:
    answer = await service.explain(
        "t", "colours", 0, given(Example(halves((0, 0, 255), (0, 0, 255))))
    )
    assert answer.explained.name == "blue" and answer.explained.index == 2


async def test_each_word_of_a_text_is_weighed(service: Service) -> None:
    answer = await service.explain("t", "letters", 0, given(Example(b"aaaa  bbbb aaaa"), "a"))
    assert [p.name for p in answer.parts] == ["aaaa", "bbbb", "aaaa"]
    a1, b, a2 = (p.weight for p in answer.parts)
    assert a1 > 0 and a2 > 0 and b < 0  # removing b's raises P(a)
    assert answer.method == "each word removed"


async def test_features_are_set_to_their_reference_in_turn(service: Service) -> None:
    answer = await service.explain("t", "lin", 0, given(Example(features={"a": 3, "b": 1})))
    assert answer.explained.name == "A"
    (a, b) = answer.parts
    assert (a.name, b.name) == ("a", "b")
    softmax_a = 1 / (1 + np.exp(-2.0))  # P(A) for logits (3, 1)
    assert a.weight == pytest.approx(softmax_a - 1 / (1 + np.exp(1.0)), abs=1e-5)
    assert b.weight == pytest.approx(softmax_a - 1 / (1 + np.exp(-3.0)), abs=1e-5)


async def test_refusals_say_why(service: Service) -> None:
    with pytest.raises(WrongMethod, match="tensor model"):
        await service.explain("t", "reg", 0, given(Example(features={"x": 1})))
    with pytest.raises(WrongMethod, match="no reference values"):
        await service.explain("t", "old", 0, given(Example(features={"a": 1, "b": 0})))
    with pytest.raises(InvalidInput, match=r"no class 'rde' \(did you mean 'red'\?\).*metadata"):
        await service.explain(
            "t", "colours", 0, given(Example(halves((0, 0, 9), (0, 0, 9))), "rde")
        )
    words = b" ".join([b"a"] * 70)
    with pytest.raises(InvalidInput, match="71 inputs.*limit of 70 .--max_explain_inputs"):
        await service.explain("t", "letters", 0, given(Example(words)))
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        await service.explain("t", "letters", 0, given(Example(b"\xff")))


async def test_a_full_queue_refuses_an_explanation(service: Service) -> None:
    before = counted("t_full", "RESOURCE_EXHAUSTED", "letters")
    with service._manager.use("letters") as servable:
        batcher = servable.batcher
        queued = batcher._max_queued
        # Hold every place but two: room for a classify, not for the explanation's 4 rows.
        with batcher.admit(queued), batcher.admit(batcher._max_admitted - queued - 2):
            with pytest.raises(QueueFull, match="queue is full"):
                await service.explain("t_full", "letters", 0, given(Example(b"a b a")))
            (answer,) = await service.classify("t", "letters", 0, one(Example(b"a b a")))
            assert answer.predictions[0].name == "a"
    assert counted("t_full", "RESOURCE_EXHAUSTED", "letters") == before + 1


async def test_grpc_and_rest_answer_an_explanation(service: Service) -> None:
    server = grpc.aio.server()
    pb_grpc.add_ClassificationServiceServicer_to_server(ClassificationApi(service), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ClassificationServiceStub(channel)
            request = pb.ExplainRequest(model_name="letters", input=b"aaaa bbbb", class_name="b")
            answer = await stub.explain(request)
            assert answer.explained.name == "b" and answer.kind == "text"
            assert [p.name for p in answer.parts] == ["aaaa", "bbbb"]
            assert answer.parts[1].weight > 0 > answer.parts[0].weight
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.explain(pb.ExplainRequest(model_name="reg"))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await server.stop(None)
    app = create_rest_app(service, max_request_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rest") as rest:
        reply = await rest.post(
            "/v1/models/lin/versions/1:explain", json={"examples": [{"a": 3, "b": 1}]}
        )
        assert reply.status_code == 200, reply.text
        doc = reply.json()
        assert doc["class"]["name"] == "A" and doc["kind"] == "features"
        assert [p["name"] for p in doc["parts"]] == ["a", "b"] and "grid" not in doc
        reply = await rest.post(
            "/v1/models/colours:explain?class=green",
            content=halves((0, 255, 0), (0, 0, 255)),
            headers={"Content-Type": "image/png"},
        )
        doc = reply.json()
        assert doc["class"]["name"] == "green" and doc["grid"] == {"rows": 8, "columns": 8}
        assert set(doc["parts"][0]) == {"weight", "row", "column"}
        reply = await rest.post(
            "/v1/models/letters:explain", json={"examples": [{"text": "a"}], "class": "zz"}
        )
        assert reply.status_code == 400 and "no class 'zz'" in reply.json()["error"]
        reply = await rest.post(
            "/v1/models/letters:explain", json={"examples": [{"text": "a"}, {"text": "b"}]}
        )
        assert reply.status_code == 400 and "one input" in reply.json()["error"]
