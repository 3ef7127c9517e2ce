"""The data plane in-process, with real tiny models: plain values in and out, every request
timed and counted, deadlines checked, metadata and health answered."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from pyserving.core import metrics
from pyserving.core.service import Batch, Service
from pyserving.errors import DeadlineExceeded, InvalidInput, ModelNotFound, ShuttingDown
from pyserving.results import ClassifyRequest, Example, ModelMetadata
from tests.onnx_models import png


def examples(*items: Example, k: int = 0) -> Callable[[ModelMetadata], Awaitable[ClassifyRequest]]:
    async def parse(model: ModelMetadata) -> ClassifyRequest:
        return ClassifyRequest(items, k)

    return parse


def batch(value: Batch) -> Callable[[ModelMetadata], Awaitable[tuple[Batch, None]]]:
    async def parse(model: ModelMetadata) -> tuple[Batch, None]:
        return value, None

    return parse


def counted(api: str, code: str, model: str, version: str = "") -> float:
    labels = {"model": model, "version": version, "api": api, "code": code}
    return metrics.REGISTRY.get_sample_value("pyserving_requests_total", labels) or 0.0


async def test_classify_an_image_and_features(service: Service) -> None:
    (red,) = await service.classify("t", "colours", 0, examples(Example(image=png((255, 0, 0)))))
    assert red.predictions[0].name == "red" and red.model_name == "colours"
    assert red.model_version == 1 and len(red.predictions) == 2  # the signature's top_k
    b, a = await service.classify(
        "t",
        "lin",
        0,
        examples(Example(features={"a": 0.0, "b": 5.0}), Example(features={"a": 3, "b": 1}), k=1),
    )
    assert [b.predictions[0].name, a.predictions[0].name] == ["B", "A"]
    assert len(b.predictions) == 1


async def test_the_parse_function_sees_the_models_metadata(service: Service) -> None:
    seen: list[ModelMetadata] = []

    async def parse(model: ModelMetadata) -> ClassifyRequest:
        seen.append(model)
        return ClassifyRequest((Example(features={"a": 1.0, "b": 0.0}),))

    await service.classify("t", "lin", 1, parse)
    (model,) = seen
    assert (model.name, model.version, model.kind) == ("lin", 1, "features")
    assert model.features == ("a", "b") and model.labels == ("A", "B")


async def test_requests_are_counted_once_with_their_code(service: Service) -> None:
    ok, bad = counted("t_count", "OK", "lin", "1"), counted("t_count", "INVALID_ARGUMENT", "lin")
    missing = counted("t_count", "NOT_FOUND", "")
    await service.classify("t_count", "lin", 0, examples(Example(features={"a": 1, "b": 0})))
    with pytest.raises(InvalidInput, match="missing feature"):
        await service.classify("t_count", "lin", 0, examples(Example(features={"a": 1})))

    async def refuse(model: ModelMetadata) -> ClassifyRequest:
        raise InvalidInput("the body is not JSON")

    with pytest.raises(InvalidInput):
        await service.classify("t_count", "lin", 0, refuse)
    with pytest.raises(ModelNotFound):
        await service.classify("t_count", "nope", 0, examples(Example(image=b"x")))
    assert counted("t_count", "OK", "lin", "1") - ok == 1
    assert counted("t_count", "INVALID_ARGUMENT", "lin") - bad == 2
    # An unknown model is recorded without its name, so labels stay bounded.
    assert counted("t_count", "NOT_FOUND", "") - missing == 1


async def test_a_cancelled_request_is_counted_as_cancelled(service: Service) -> None:
    before = counted("t_cancel", "CANCELLED", "lin")
    started = asyncio.Event()

    async def never(model: ModelMetadata) -> ClassifyRequest:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.create_task(service.classify("t_cancel", "lin", 0, never))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counted("t_cancel", "CANCELLED", "lin") - before == 1


async def test_wrong_input_kind_and_bad_top_k_are_invalid(service: Service) -> None:
    with pytest.raises(InvalidInput, match="takes an image"):
        await service.classify("t", "colours", 0, examples(Example(features={"a": 1.0})))
    with pytest.raises(InvalidInput, match=r"takes named features \(a, b\)"):
        await service.classify("t", "lin", 0, examples(Example(image=png((0, 0, 255)))))
    with pytest.raises(InvalidInput, match="top_k"):
        await service.classify("t", "lin", 0, examples(Example(features={"a": 1, "b": 0}), k=-1))
    with pytest.raises(InvalidInput, match="no inputs"):
        await service.classify("t", "lin", 0, examples())


async def test_a_passed_deadline_is_turned_away(service: Service) -> None:
    past = asyncio.get_running_loop().time() - 1
    with pytest.raises(DeadlineExceeded):
        await service.classify("t", "lin", 0, examples(Example(features={"a": 1, "b": 0})), past)


async def test_predict_images_a_matrix_and_named_or_ordered_rows(service: Service) -> None:
    images = [png((0, 255, 0)), png((0, 0, 255))]
    scores, rest = await service.predict("t", "colours", 0, batch(Batch(images=images)))
    assert rest is None and scores.labels == ("red", "green", "blue")
    assert scores.probabilities.dtype == np.float32
    assert np.argmax(scores.probabilities, axis=1).tolist() == [1, 2]
    np.testing.assert_allclose(scores.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    matrix = np.array([[0.0, 5.0], [9.0, 0.0]], dtype=np.float32)
    by_matrix, _ = await service.predict("t", "lin", 0, batch(Batch(features=matrix)))
    rows: list[Any] = [[0.0, 5.0], {"a": 9.0, "b": 0.0}]
    by_rows, _ = await service.predict("t", "lin", 0, batch(Batch(features=rows)))
    np.testing.assert_allclose(by_matrix.probabilities, by_rows.probabilities)
    assert np.argmax(by_rows.probabilities, axis=1).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([{"a": 1.0}], "missing feature"),
        ([[1.0, 2.0, 3.0]], r"2 numbers \(a, b\)"),
        (np.zeros((1, 3), np.float32), r"\[N, 2\]"),
        ([[1.0, float("nan")]], "finite"),
        (None, r"takes features \[N, 2\]"),
    ],
)
async def test_predict_checks_feature_rows(service: Service, features: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await service.predict("t", "lin", 0, batch(Batch(features=features)))


async def test_predict_returns_what_the_parse_function_returned(service: Service) -> None:
    async def parse(model: ModelMetadata) -> tuple[Batch, str]:
        return Batch(features=[[1.0, 0.0]]), f"parsed for {model.name}"

    scores, rest = await service.predict("t", "lin", 0, parse)
    assert rest == "parsed for lin" and scores.model_version == 1


async def test_metadata_is_plain_values_with_the_engine(service: Service) -> None:
    model = service.metadata("colours")
    assert model.kind == "image" and model.input_name == "image" and model.top_k == 2
    assert model.versions == (1,) and model.version == 1
    assert model.engine == "onnxruntime" and model.precision == "f32"
    assert service.metadata().name == service.default_model == "colours"
    with pytest.raises(ModelNotFound, match="'nope'"):
        service.metadata("nope")
    with pytest.raises(ModelNotFound, match="no version 7"):
        service.metadata("lin", 7)


async def test_status_readiness_health_and_load(service: Service) -> None:
    (lin,) = service.model_status("lin")
    (version,) = lin.versions
    assert (version.version, version.state, version.engine) == (1, "AVAILABLE", "onnxruntime")
    assert service.model_names() == ["colours", "letters", "lin"]
    assert service.ready() and service.model_ready("lin", 1)
    with pytest.raises(ModelNotFound):
        service.model_ready("lin", 2)
    health = service.health()
    assert health.server and dict(health.models) == {"colours": True, "letters": True, "lin": True}
    loads = {v.model: v for v in service.load()}
    assert set(loads) == {"colours", "letters", "lin"}
    assert loads["lin"].engine == "onnxruntime" and loads["lin"].in_flight == 0
    service.stop_taking_requests()
    assert not service.ready() and not service.model_ready("lin")


async def test_classify_and_predict_text(service: Service) -> None:
    (b,) = await service.classify("t", "letters", 0, examples(Example(image=b"  b b\n bba ")))
    assert [p.name for p in b.predictions] == ["b"]  # the signature's top_k is 1
    scores, _ = await service.predict("t", "letters", 0, batch(Batch(images=[b"aaaa", b"bbbb"])))
    assert scores.probabilities.shape == (2, 2)
    assert scores.probabilities.argmax(axis=1).tolist() == [0, 1]
    model = service.metadata("letters")
    assert (model.kind, model.input_datatype, model.input_shape) == ("text", "BYTES", (-1,))


@pytest.mark.parametrize(
    ("example", "message"),
    [
        (Example(image=b""), "the text is empty"),
        (Example(image=b"\xffab"), "not valid UTF-8"),
        (Example(image=b"a" * 1001), "over the limit of 1,000 (--max_text_chars)"),
        (Example(features={"a": 1.0}), "takes UTF-8 text in `input`, not features"),
    ],
)
async def test_bad_text_is_invalid(service: Service, example: Example, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        await service.classify("t", "letters", 0, examples(example))


async def test_after_the_drain_new_requests_are_refused_and_those_in_flight_finish(
    service: Service,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(model: ModelMetadata) -> ClassifyRequest:
        entered.set()
        await release.wait()
        return ClassifyRequest((Example(features={"a": 1.0, "b": 0.0}),))

    in_flight = asyncio.create_task(service.classify("t", "lin", 0, slow))
    await entered.wait()
    service.refuse_requests()
    assert not service.ready() and service.in_flight == 1
    with pytest.raises(ShuttingDown, match="shutting down"):
        await service.classify("t", "lin", 0, examples(Example(features={"a": 1, "b": 0})))
    assert counted("t", "UNAVAILABLE", "lin") == 1
    waiting = asyncio.create_task(service.wait_none_in_flight())
    await asyncio.sleep(0)
    assert not waiting.done()  # the request in flight still holds it
    release.set()
    (result,) = await in_flight
    assert result.predictions[0].name == "A"
    await asyncio.wait_for(waiting, 5)
    assert service.in_flight == 0
