"""The data plane every adapter calls: look up, time, count, check deadlines, run, answer.

Adapters hand the service plain values (or a function that parses the request against the
model's metadata) and get plain values back; they never see the manager or a servable.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import numpy as np

from pyserving.core import metrics
from pyserving.core.manager import ModelManager
from pyserving.core.servable import Servable
from pyserving.core.settings import BatchingSettings, ModelConfig, Settings
from pyserving.errors import (
    DeadlineExceeded,
    InvalidInput,
    PyservingError,
    ShuttingDown,
    WrongMethod,
)
from pyserving.kinds.base import Batch as Batch  # the adapters' input type, re-exported
from pyserving.kinds.base import Limits, Occlusion, Prepare
from pyserving.postprocess import softmax, top_k
from pyserving.results import (
    Classification,
    ClassifyRequest,
    Example,
    Explanation,
    Health,
    ModelMetadata,
    ModelStatus,
    Prediction,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Scores:
    """Class probabilities for a batch of inputs, `probabilities[i, j]` for input i, class j."""

    probabilities: np.ndarray  # float32 [N, classes]
    labels: tuple[str, ...]
    model_name: str
    model_version: int


@dataclass(frozen=True)
class Outputs:
    """Every output of a tensor model for one request, by name, in the model's order."""

    tensors: dict[str, np.ndarray]
    model_name: str
    model_version: int


class Service:
    """Transport-neutral data plane. Called from the event loop by the adapters.

    Raises the domain errors of `pyserving.errors`; the adapters map them to status codes.
    `classify`, `predict` (class probabilities) and `infer` (a tensor model's outputs) are
    the timed, counted requests, labelled by the `api` the adapter names.
    """

    def __init__(self, manager: ModelManager, executor: Executor, settings: Settings) -> None:
        self._manager = manager
        self._executor = executor
        self._settings = settings
        self._limits = Limits(
            settings.max_image_pixels,
            settings.max_text_chars,
            settings.max_audio_seconds,
            max_tensor_bytes=settings.max_request_bytes,
            max_explain_inputs=settings.max_explain_inputs,
        )
        self._stopping = False  # not ready: shutdown has begun
        self._refusing = False  # new requests are refused: the drain is over
        self._in_flight = 0  # classify and predict requests being served
        self._none_in_flight = asyncio.Event()
        self._none_in_flight.set()

    # -- requests --------------------------------------------------------------------

    async def classify(
        self,
        api: str,
        model_name: str,
        model_version: int,
        parse: Callable[[ModelMetadata], Awaitable[ClassifyRequest]],
        deadline: float | None = None,
        label: str = "",
    ) -> list[Classification]:
        """Classify each example of the request that `parse` reads, against the model.

        `deadline` is in event-loop time; `label` names the version instead of its number.
        """
        with self._request(api, model_name) as tracked:
            model = self.metadata(model_name, model_version, label)
            tracked.label = label
            _expect(model, "classes")
            request = await parse(model)
            results = await self._classify(model_name, model_version, request, deadline, label)
            tracked.version = str(results[0].model_version)
            return results

    async def predict(
        self,
        api: str,
        model_name: str,
        model_version: int,
        parse: Callable[[ModelMetadata], Awaitable[tuple[Batch, T]]],
        deadline: float | None = None,
        label: str = "",
    ) -> tuple[Scores, T]:
        """Class probabilities for the batch that `parse` reads, with what else it returned.

        `deadline` is in event-loop time; `label` names the version instead of its number.
        """
        with self._request(api, model_name) as tracked:
            model = self.metadata(model_name, model_version, label)
            tracked.label = label
            _expect(model, "classes")
            batch, rest = await parse(model)
            scores = await self._predict(model_name, model_version, batch, deadline, label)
            tracked.version = str(scores.model_version)
            return scores, rest

    async def infer(
        self,
        api: str,
        model_name: str,
        model_version: int,
        parse: Callable[[ModelMetadata], Awaitable[tuple[Batch, T]]],
        deadline: float | None = None,
        label: str = "",
    ) -> tuple[Outputs, T]:
        """A tensor model's outputs for the named input tensors that `parse` reads, with what
        else it returned. WrongMethod for a classifier (use `predict`).

        `deadline` is in event-loop time; `label` names the version instead of its number.
        """
        with self._request(api, model_name) as tracked:
            model = self.metadata(model_name, model_version, label)
            tracked.label = label
            _expect(model, "tensors")
            batch, rest = await parse(model)
            outputs = await self._infer(model_name, model_version, batch, deadline, label)
            tracked.version = str(outputs.model_version)
            return outputs, rest

    async def explain(
        self,
        api: str,
        model_name: str,
        model_version: int,
        parse: Callable[[ModelMetadata], Awaitable[tuple[Example, str]]],
        deadline: float | None = None,
        label: str = "",
    ) -> Explanation:
        """Why the model gives a class for an input: `parse` reads the input and the class's
        name (empty: the top class). The kind hides each part of the input in turn, and the
        original and every hidden copy run through the batcher, admitted to its queue as
        one request.

        WrongMethod for a tensor model; InvalidInput for an unknown class or an input with
        more parts than `max_explain_inputs` allows.
        """
        with self._request(api, model_name) as tracked:
            model = self.metadata(model_name, model_version, label)
            tracked.label = label
            if model.answers != "classes":
                raise WrongMethod(
                    f"model {model.name!r} is a tensor model: it cannot be explained (an "
                    "explanation watches one class's probability, and it has no classes)"
                )
            example, class_name = await parse(model)
            result = await self._explain(
                model_name, model_version, example, class_name, deadline, label
            )
            tracked.version = str(result.model_version)
            return result

    def version_of(self, model_name: str = "", model_version: int = 0, label: str = "") -> int:
        """The version number a request naming `model_version` or the version `label` asks
        for (0: the newest), for a status. Requests pass the label on instead: it is read
        again at each look-up, so a label that moves never leaves a request without a version.

        Raises InvalidInput when both are given, ModelNotFound for an unknown label.
        """
        return self._manager.version_of(model_name, model_version, label)

    def takes_tensors(self, model_name: str = "", model_version: int = 0, label: str = "") -> bool:
        """Whether requests for this version go to `infer` (a tensor model) rather than
        `predict`. False when there is no such version: the request then says why."""
        try:
            return self.metadata(model_name, model_version, label).answers == "tensors"
        except PyservingError:
            return False

    @contextmanager
    def _request(self, api: str, model_name: str) -> Iterator[metrics.Request]:
        """Time and count one request: the one place request metrics are recorded.

        Refuses it with ShuttingDown once `refuse_requests` was called.
        """
        with metrics.track(api, self._manager.configured) as tracked:
            tracked.model = model_name or self._manager.default_model
            if self._refusing:
                raise ShuttingDown("the server is shutting down; retry on another replica")
            self._in_flight += 1
            self._none_in_flight.clear()
            try:
                yield tracked
            finally:
                self._in_flight -= 1
                if not self._in_flight:
                    self._none_in_flight.set()

    async def _classify(
        self,
        name: str,
        version: int,
        request: ClassifyRequest,
        deadline: float | None,
        label: str = "",
    ) -> list[Classification]:
        if request.top_k < 0:
            raise InvalidInput(f"top_k must be 0 (the default) or positive, got {request.top_k}")
        if not request.examples:
            raise InvalidInput("the request holds no inputs")
        with (
            self._manager.use(name, version, label) as servable,
            servable.batcher.admit(len(request.examples)),
        ):
            _check_deadline(deadline)
            return list(
                await asyncio.gather(
                    *(
                        self._classify_one(servable, e, request.top_k, deadline)
                        for e in request.examples
                    )
                )
            )

    async def _classify_one(
        self, servable: Servable, example: Example, k: int, deadline: float | None
    ) -> Classification:
        sig = servable.signature
        prepare = partial(servable.kind.prepare, sig, example, self._limits, servable.row_shape)
        scores = await self._run_one(servable, prepare, deadline)
        predictions = top_k(scores, sig.labels, k or sig.top_k, sig.scores == "logits")
        return Classification(predictions, servable.name, servable.version)

    async def _predict(
        self, name: str, version: int, batch: Batch, deadline: float | None, label: str = ""
    ) -> Scores:
        with (
            self._manager.use(name, version, label) as servable,
            servable.batcher.admit(max(1, len(batch))),
        ):
            _check_deadline(deadline)
            sig = servable.signature
            prepares = servable.kind.prepare_batch(sig, batch, self._limits, servable.row_shape)
            if servable.kind.OFF_LOOP:
                arrays = await asyncio.gather(*(self._prepare(servable, p) for p in prepares))
            else:
                arrays = [self._timed(servable, p) for p in prepares]
            if not arrays:
                raise InvalidInput("the request holds no inputs (shape [0])")
            rows = await asyncio.gather(*(servable.batcher.submit(a, deadline) for a in arrays))
            scores = np.stack(rows)
            probs = softmax(scores) if sig.scores == "logits" else scores
            return Scores(probs.astype(np.float32), sig.labels, servable.name, servable.version)

    async def _infer(
        self, name: str, version: int, batch: Batch, deadline: float | None, label: str = ""
    ) -> Outputs:
        with self._manager.use(name, version, label) as servable, servable.batcher.admit(1):
            _check_deadline(deadline)
            sig = servable.signature
            # A kind that answers with tensors prepares the whole request as one input.
            (prepare,) = servable.kind.prepare_batch(sig, batch, self._limits, servable.row_shape)
            outputs = await self._run_one(servable, prepare, deadline)
            return Outputs(dict(outputs), servable.name, servable.version)

    async def _explain(
        self,
        name: str,
        version: int,
        example: Example,
        class_name: str,
        deadline: float | None,
        label: str,
    ) -> Explanation:
        with self._manager.use(name, version, label) as servable, servable.batcher.admit(1):
            _check_deadline(deadline)
            sig = servable.signature
            index = _class_index(servable.name, sig.labels, class_name)
            prepare = partial(servable.kind.prepare, sig, example, self._limits, servable.row_shape)
            occlude = partial(servable.kind.occlusions, sig, limits=self._limits)
            if servable.kind.OFF_LOOP:
                row = await self._prepare(servable, prepare)
            else:
                row = self._timed(servable, prepare)
            # Up to --max_explain_inputs copies of the input, whatever its kind: never on the
            # event loop, even where preparing one input is cheap enough to stay there.
            loop = asyncio.get_running_loop()
            occlusion: Occlusion = await loop.run_in_executor(self._executor, occlude, row)
            with servable.batcher.admit(len(occlusion.rows)):
                _check_deadline(deadline)
                rows = (row, *occlusion.rows)
                answers = await asyncio.gather(
                    *(servable.batcher.submit(r, deadline) for r in rows)
                )
            scores = np.stack(answers)
            probs = softmax(scores) if sig.scores == "logits" else scores
            if index is None:
                index = int(np.argmax(probs[0]))
            p = probs[:, index].astype(np.float64)
            weights = occlusion.weigh(float(p[0]), p[1:])
            parts = tuple(
                replace(part, weight=float(w))
                for part, w in zip(occlusion.parts, weights, strict=True)
            )
            return Explanation(
                servable.name,
                servable.version,
                Prediction(sig.labels[index], float(p[0]), index),
                sig.kind,
                parts,
                occlusion.grid,
                occlusion.method,
            )

    async def _run_one(self, servable: Servable, prepare: Prepare, deadline: float | None) -> Any:
        """Prepare one input and run it through the batcher: CPU-heavy preparation in the
        pool (in the same trip as the model when the batcher is idle), cheap on the loop."""
        if not servable.kind.OFF_LOOP:
            return await servable.batcher.submit(self._timed(servable, prepare), deadline)
        answer = await servable.batcher.run_alone(partial(self._timed, servable, prepare), deadline)
        if answer is None:
            prepared = await self._prepare(servable, prepare)
            answer = await servable.batcher.submit(prepared, deadline)
        return answer

    async def _prepare(self, servable: Servable, prepare: Prepare) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, servable, prepare)

    def _timed(self, servable: Servable, prepare: Prepare) -> np.ndarray:
        """Prepare one input for `servable` (decode, check), and record how long it took."""
        started = time.perf_counter()
        array = prepare()
        metrics.PREPROCESS_SECONDS.labels(servable.name).observe(time.perf_counter() - started)
        return array

    # -- metadata, status and readiness ------------------------------------------------

    @property
    def default_model(self) -> str:
        return self._manager.default_model

    def model_names(self) -> list[str]:
        """The configured model names, sorted."""
        return self._manager.model_names()

    def metadata(
        self, model_name: str = "", model_version: int = 0, label: str = ""
    ) -> ModelMetadata:
        """The version a request for this name and version would get, as plain values.

        Raises ModelNotFound or ModelNotReady as a request would.
        """
        servable = self._manager.get(model_name, model_version, label)
        sig = servable.signature
        wire = servable.kind.wire(sig)
        described = servable.kind.describe(sig)
        return ModelMetadata(
            name=servable.name,
            version=servable.version,
            versions=tuple(self._manager.available_versions(servable.name)),
            kind=sig.kind,
            input_name=sig.input_name,
            features=described.features,
            labels=sig.labels,
            top_k=sig.top_k,
            engine=servable.engine_info.name,
            precision=servable.precision,
            input_datatype=wire.datatype,
            input_shape=wire.shape,
            answers=servable.kind.OUTPUT.answers,
            inputs=described.inputs,
            outputs=described.outputs,
            version_labels=tuple(sorted(self._manager.labels(servable.name).items())),
        )

    async def replace_models(self, models: tuple[ModelConfig, ...], default: str = "") -> None:
        """Serve this list of models from now on (default: `default`, else the first);
        returns once each new version has loaded or failed."""
        await self._manager.replace_config(models, default)

    def batching(self, model_name: str = "", model_version: int = 0) -> BatchingSettings:
        """The batching of the version a request would get (for Triton's model config)."""
        return self._manager.get(model_name, model_version).batching

    def model_status(self, model_name: str = "") -> list[ModelStatus]:
        """The lifecycle state of every version (of every model when the name is empty)."""
        return self._manager.status(model_name)

    def ready(self) -> bool:
        """Whether the server takes traffic: its default model is available, not stopping."""
        return not self._stopping and self._manager.is_available()

    def model_ready(self, model_name: str = "", model_version: int = 0) -> bool:
        """Whether requests for this version are served now.

        Raises ModelNotFound or ModelNotReady, saying why, when the version is not there.
        """
        self._manager.get(model_name, model_version)
        return self.ready()

    def health(self) -> Health:
        """Availability of the default model and of each model, for health checks."""
        names = self._manager.model_names()
        return Health(
            self._manager.is_available(), {n: self._manager.is_available(n) for n in names}
        )

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next change of any model's state (a new event after each change)."""
        return self._manager.changed

    def load(self) -> list[metrics.VersionLoad]:
        """Queue depth, requests in flight and engine of every available version."""
        return [
            metrics.VersionLoad(
                name,
                s.version,
                s.engine_info.name,
                s.precision,
                s.batcher.queue_depth,
                s.in_flight,
            )
            for name, servables in self._manager.available().items()
            for s in servables
        ]

    def stop_taking_requests(self) -> None:
        """Report not ready from now on: shutdown has begun."""
        self._stopping = True

    def refuse_requests(self) -> None:
        """Refuse every new classify and predict request with ShuttingDown from now on."""
        self._stopping = True
        self._refusing = True

    @property
    def in_flight(self) -> int:
        """Classify and predict requests being served now."""
        return self._in_flight

    async def wait_none_in_flight(self) -> None:
        """Return once no request is being served."""
        await self._none_in_flight.wait()


_USE = {
    "classes": "is a classifier ({kind} model): use classify, or predict for its class "
    "probabilities",
    "tensors": "is a tensor model, not a classifier: use predict (OIP v2 infer, TF Serving "
    ":predict, or `pyserving predict`)",
}


def _expect(model: ModelMetadata, answers: str) -> None:
    """Refuse a request for a method the model does not answer, saying which it does."""
    if model.answers != answers:
        raise WrongMethod(f"model {model.name!r} " + _USE[model.answers].format(kind=model.kind))


def _class_index(model: str, labels: tuple[str, ...], name: str) -> int | None:
    """The index of class `name` (None for an empty name: the top class), or InvalidInput
    saying where the model's classes are listed."""
    if not name:
        return None
    if name in labels:
        return labels.index(name)
    close = difflib.get_close_matches(name, labels, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise InvalidInput(
        f"model {model!r} has no class {name!r}{hint}; its {len(labels)} classes are in its "
        f"metadata (REST GET /v1/models/{model}/metadata)"
    )


def _check_deadline(deadline: float | None) -> None:
    """Turn away a request whose deadline passed before it cost anything."""
    if deadline is not None and deadline <= asyncio.get_running_loop().time():
        raise DeadlineExceeded("the request's deadline passed before it could be served")
