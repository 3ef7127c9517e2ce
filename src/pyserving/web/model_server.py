"""The model server as the web app sees it: what each model takes, classify and explain
inputs over gRPC, say what went wrong."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pyserving.client import AsyncClient, ClientTLS
from pyserving.errors import RemoteError
from pyserving.results import Classification, Explanation, ModelStatus
from pyserving.web.uploads import CLIPS, FEATURES, IMAGES, Upload, clip_refusal

T = TypeVar("T")

TOP_K = 5
# The server's words for an undecodable image (pyserving.preprocess, which needs numpy and
# Pillow, so is not imported into the web process).
ACCEPTED_TEXT = "expected JPEG, PNG, WebP, GIF or BMP"
# A channel the server refused is replaced at most this often (see ModelServer).
RECONNECT_SECONDS = 1.0
# What gRPC and our client put in the details when no connection could be made at all.
_TRANSPORT_FAILURES = ("not reachable", "connect", "dns", "socket closed", "resolve")


@dataclass(frozen=True)
class FileResult:
    """The outcome for one uploaded file: a classification (or, asked to explain, an
    explanation), or an error for people.

    `status` is the HTTP status this file alone would get; `detail` is the server's message.
    """

    filename: str
    classification: Classification | None = None
    elapsed_ms: float = 0.0
    error: str = ""
    status: int = 200
    code: str = ""
    detail: str = ""
    server_down: bool = False
    source: str = IMAGES  # the form field the input came in (uploads.IMAGES, CLIPS, ...)
    explanation: Explanation | None = None

    @property
    def answered(self) -> bool:
        """Whether the server answered this file (with a classification or an explanation)."""
        return self.classification is not None or self.explanation is not None


@dataclass(frozen=True)
class ModelChoice:
    """A model the page offers, and what it takes: `kind` is "" when the server cannot say
    (not reachable, or no version available yet)."""

    name: str
    kind: str = ""
    features: tuple[str, ...] = ()
    label: str = ""  # a version label: this choice asks for the version it names
    version: int = 0  # the version the label names

    @property
    def value(self) -> str:
        """What the picker sends: the model's name, then `/label` for a label's choice
        (neither a model name nor a label holds a `/`)."""
        return f"{self.name}/{self.label}" if self.label else self.name

    @property
    def title(self) -> str:
        """What the picker shows."""
        return f"{self.name} · {self.label} (version {self.version})" if self.label else self.name

    @property
    def classifies(self) -> bool:
        """Whether the page can classify with it: a `tensor` model only answers predict."""
        return self.kind != "tensor"


@dataclass
class _Connection:
    client: AsyncClient
    created: float
    calls: int = 0
    retired: bool = False


class ModelServer:
    """One AsyncClient to the model server, replaced when a call finds the server unreachable.

    A gRPC channel reconnects by itself, but with a backoff that grows to two minutes, so a
    channel that failed is swapped for a fresh one (at most once per RECONNECT_SECONDS); the
    old one is closed when its last call ends. Used from the event loop only.
    """

    def __init__(
        self,
        address: str,
        timeout: float = 30.0,
        tls: ClientTLS | None = None,
        auth_token: str | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.auth_token = auth_token  # sent with every call, for a server that asks for one
        self.timeout = timeout
        self._connection: _Connection | None = None

    def unreachable_message(self) -> str:
        """What the page and the API say while no connection to the server can be made."""
        return f"the classification server at {self.address} is not reachable"

    async def classify_all(
        self, uploads: Sequence[Upload], model_name: str, label: str = ""
    ) -> list[FileResult]:
        """Classify every upload concurrently; results come back in upload order."""
        return list(await asyncio.gather(*(self.classify(u, model_name, label) for u in uploads)))

    async def classify(self, upload: Upload, model_name: str, label: str = "") -> FileResult:
        """Classify one input with the model (the version `label` names, when given); never
        raises for a failed call, the result carries the error."""
        if (refused := _refused_clip(upload)) is not None:
            return refused
        started = time.perf_counter()
        try:
            result = await self._use(
                lambda client: client.classify(
                    upload.data,
                    model_name,
                    top_k=TOP_K,
                    features=upload.features if upload.source == FEATURES else None,
                    timeout=self.timeout,
                    label=label,
                )
            )
        except RemoteError as exc:
            return self._failure(upload, exc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return FileResult(upload.filename, result, elapsed_ms, source=upload.source)

    async def explain_all(
        self, uploads: Sequence[Upload], model_name: str, label: str = "", class_name: str = ""
    ) -> list[FileResult]:
        """Explain every upload concurrently; results come back in upload order."""
        return list(
            await asyncio.gather(*(self.explain(u, model_name, label, class_name) for u in uploads))
        )

    async def explain(
        self, upload: Upload, model_name: str, label: str = "", class_name: str = ""
    ) -> FileResult:
        """Why the model gives `class_name` (empty: its top class) for one input; never
        raises for a failed call, the result carries the error."""
        if (refused := _refused_clip(upload)) is not None:
            return refused
        started = time.perf_counter()
        try:
            explanation = await self._use(
                lambda client: client.explain(
                    upload.data,
                    model_name,
                    features=upload.features if upload.source == FEATURES else None,
                    timeout=self.timeout,
                    label=label,
                    class_name=class_name,
                )
            )
        except RemoteError as exc:
            return self._failure(upload, exc, "explained")
        elapsed_ms = (time.perf_counter() - started) * 1000
        return FileResult(
            upload.filename, elapsed_ms=elapsed_ms, source=upload.source, explanation=explanation
        )

    async def choices(self, names: Sequence[str], seconds: float = 2.0) -> tuple[ModelChoice, ...]:
        """What each of `names` takes (the server's default model when there are none).

        The kind is that of the newest available version, the one a request gets. Each
        version label of an available version follows its model as a choice of its own.
        When the server cannot be asked, the choices carry no kind.
        """
        try:
            models = await self._use(lambda client: client.model_status(timeout=seconds))
        except RemoteError:
            return tuple(ModelChoice(n) for n in names) or (ModelChoice(""),)
        by_name = {m.name: m for m in models}
        if not names:
            return tuple(_choice(m) for m in models if m.default) or (ModelChoice(""),)
        choices: list[ModelChoice] = []
        for n in names:
            model = by_name.get(n)
            choices += [_choice(model), *_labels(model)] if model else [ModelChoice(n)]
        return tuple(choices)

    async def check(self, seconds: float = 2.0) -> str | None:
        """None when the model server answers; otherwise why it cannot be used, for people.

        Sends an empty image: a cheap call that a healthy server refuses with INVALID_ARGUMENT.
        """
        try:
            await self._use(lambda client: client.classify(b"", "", top_k=1, timeout=seconds))
        except RemoteError as exc:
            if _is_unreachable(exc):
                return self.unreachable_message()
            if exc.grpc_code == "DEADLINE_EXCEEDED":
                return (
                    f"the classification server at {self.address} did not answer in {seconds:g} s"
                )
            if exc.grpc_code == "UNAVAILABLE":
                return f"the classification server at {self.address} is not ready: {exc}"
        return None

    async def close(self) -> None:
        """Close the current channel; one retired with calls in flight closes after them."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.client.close()

    async def _use(self, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
        connection = self._current()
        connection.calls += 1
        try:
            return await call(connection.client)
        except RemoteError as exc:
            error = exc
            if _is_unreachable(error) or error.grpc_code == "DEADLINE_EXCEEDED":
                self._retire(connection)
            raise error from None
        finally:
            connection.calls -= 1
            if connection.retired and connection.calls == 0:
                await connection.client.close()

    def _current(self) -> _Connection:
        if self._connection is None:
            client = AsyncClient(self.address, self.timeout, self.tls, self.auth_token)
            self._connection = _Connection(client, time.monotonic())
        return self._connection

    def _retire(self, connection: _Connection) -> None:
        if connection is not self._connection:
            return
        if time.monotonic() - connection.created < RECONNECT_SECONDS:
            return
        connection.retired = True
        self._connection = None

    def _failure(self, upload: Upload, exc: RemoteError, done: str = "classified") -> FileResult:
        code, detail, name = exc.grpc_code, str(exc), upload.filename
        if _is_unreachable(exc):
            error = self.unreachable_message()
        elif code == "INVALID_ARGUMENT" and ACCEPTED_TEXT in detail and upload.source == IMAGES:
            error = _unreadable_image(name, detail)
        elif code == "DEADLINE_EXCEEDED":
            error = f"the classification server did not answer within {self.timeout:g} s"
        elif code == "RESOURCE_EXHAUSTED":
            error = "the classification server is busy: try again in a moment"
        else:
            error = f"{name} could not be {done}: {detail}"
        return FileResult(
            name,
            error=error,
            status=exc.http_status,
            code=code,
            detail=detail,
            server_down=_is_unreachable(exc),
            source=upload.source,
        )


def _refused_clip(upload: Upload) -> FileResult | None:
    """The result for a clip the server could not decode, so it is not sent; else None."""
    if upload.source != CLIPS or (refusal := clip_refusal(upload)) is None:
        return None
    error, detail = refusal
    return FileResult(
        upload.filename,
        error=error,
        status=400,
        code="INVALID_ARGUMENT",
        detail=detail,
        source=CLIPS,
    )


def _choice(model: ModelStatus) -> ModelChoice:
    available = [v for v in model.versions if v.state == "AVAILABLE"]
    if not available:
        return ModelChoice(model.name)
    newest = max(available, key=lambda v: v.version)
    return ModelChoice(model.name, newest.kind, newest.features)


def _labels(model: ModelStatus) -> tuple[ModelChoice, ...]:
    """A choice for each version label of an available version, by label."""
    labelled = [(label, v) for v in model.versions if v.state == "AVAILABLE" for label in v.labels]
    return tuple(
        ModelChoice(model.name, v.kind, v.features, label, v.version)
        for label, v in sorted(labelled, key=lambda pair: pair[0])
    )


def _unreadable_image(name: str, detail: str) -> str:
    """The headline for an image the server could not decode, with the reason it gave."""
    if detail.startswith("the image is empty"):
        return f"{name} is empty (0 bytes): {ACCEPTED_TEXT}"
    reason = _REASON.search(detail)
    why = reason.group(1) if reason else ""
    if not why or why == "not a format we read":
        return f"{name} is not an image we can read ({ACCEPTED_TEXT})"
    if "truncated" in why.lower():
        return f"{name} is cut short (truncated): only part of the image is there"
    return f"{name} could not be read as an image: {why}"


# The server's decoding errors end with Pillow's reason in parentheses.
_REASON = re.compile(r"\(([^()]*(?:\([^()]*\)[^()]*)*)\)$")


def _is_unreachable(exc: RemoteError) -> bool:
    details = str(exc).lower()
    return exc.grpc_code == "UNAVAILABLE" and any(m in details for m in _TRANSPORT_FAILURES)
