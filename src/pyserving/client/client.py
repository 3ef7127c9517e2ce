"""The Python gRPC client used by the CLI, the web app, tests and benchmarks.

from pyserving.client import Client
with Client("localhost:9999") as client:
    result = client.classify(open("cat.jpg", "rb").read())
    print(result.predictions[0].name)

A tensor model (no classes) is run with `predict`, over the Open Inference Protocol v2:
`client.predict([Tensor("x", "FP32", (1, 3), (1.0, 2.0, 3.0))], "reg").outputs`.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import grpc

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving._proto import grpc_predict_v2_pb2 as v2
from pyserving._proto import grpc_predict_v2_pb2_grpc as v2_grpc
from pyserving.errors import ConfigError, RemoteError
from pyserving.results import (
    Classification,
    Explanation,
    ExplanationPart,
    Inference,
    ModelStatus,
    Prediction,
    Tensor,
    TensorSpec,
    VersionStatus,
)

DEFAULT_ADDRESS = "localhost:9999"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Balance over every address the target resolves to, and retry calls that found a server
# unavailable (classify is idempotent): a replica that goes away costs at most its calls
# in flight. CANCELLED is retried too: a server that shuts down cancels calls it had
# received but not yet handed to a handler (grpc/grpc#41785). gRPC never retries a call
# this client cancelled itself, and a deadline ends retries with DEADLINE_EXCEEDED.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "ClassificationService"}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
            },
        }
    ],
}
_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
]


@dataclass(frozen=True)
class ClientTLS:
    """TLS for the channel: the CA that signed the server's certificate, and for mutual
    TLS this client's own certificate and key (PEM files)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


def target(address: str) -> str:
    """A gRPC target for `address`: `host:port`, several `host:port` separated by commas
    (resolved once, balanced round-robin), or any gRPC target such as `dns:///name:port`.
    """
    parts = [a.strip() for a in address.split(",") if a.strip()]
    if len(parts) <= 1:
        return address.strip()
    ips = []
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"expected host:port in the server list, got {part!r}")
        host = host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConfigError(f"cannot resolve server {host!r}: {exc}") from exc
        ip = str(infos[0][4][0])
        ips.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    scheme = "ipv6" if all(a.startswith("[") for a in ips) else "ipv4"
    if scheme == "ipv4" and any(a.startswith("[") for a in ips):
        raise ConfigError("mix of IPv4 and IPv6 servers; use a dns:/// name instead")
    return f"{scheme}:{','.join(ips)}"


def _channel(address: str, tls: ClientTLS | None, aio: bool, token: str | None = None) -> Any:
    """A channel to `address`; with `token`, every call on it carries it as a bearer token."""
    module = grpc.aio if aio else grpc
    options: dict[str, Any] = {"options": _OPTIONS}
    if aio and token:
        options["interceptors"] = [_AioBearer(token)]
    if tls is None:
        channel = module.insecure_channel(target(address), **options)
    else:
        channel = module.secure_channel(target(address), tls.credentials(), **options)
    return grpc.intercept_channel(channel, _Bearer(token)) if token and not aio else channel


def _with_token(details: Any, token: str) -> Any:
    metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
    return details._replace(metadata=metadata)


class _CallDetails(
    NamedTuple(
        "_CallDetails",
        [
            ("method", str),
            ("timeout", float | None),
            ("metadata", Any),
            ("credentials", Any),
            ("wait_for_ready", bool | None),
            ("compression", Any),
        ],
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """grpc.ClientCallDetails as a named tuple, so a copy can carry more metadata."""


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every call of a blocking channel."""

    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: Any) -> _CallDetails:
        copy = _CallDetails(
            details.method,
            details.timeout,
            details.metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        return _with_token(copy, self._token)  # type: ignore[no-any-return]

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _AioBearer(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call of an asyncio channel."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


def _request(
    image: bytes,
    model_name: str,
    model_version: int,
    top_k: int,
    features: Mapping[str, float],
    label: str = "",
) -> pb.ClassificationRequest:
    return pb.ClassificationRequest(
        input=image,
        model_name=model_name,
        model_version=model_version,
        top_k=top_k,
        features=dict(features),
        version_label=label,
    )


def _result(response: pb.ClassificationResponse) -> Classification:
    return Classification(
        tuple(Prediction(c.name, c.score, c.index) for c in response.classes),
        response.model_name,
        response.model_version,
    )


def _explain_request(
    image: bytes,
    model_name: str,
    model_version: int,
    features: Mapping[str, float],
    label: str,
    class_name: str,
) -> pb.ExplainRequest:
    return pb.ExplainRequest(
        input=image,
        model_name=model_name,
        model_version=model_version,
        features=dict(features),
        version_label=label,
        class_name=class_name,
    )


def _explanation(response: pb.ExplainResponse) -> Explanation:
    c = response.explained
    return Explanation(
        response.model_name,
        response.model_version,
        Prediction(c.name, c.score, c.index),
        response.kind,
        tuple(
            ExplanationPart(p.weight, p.name, p.start_seconds, p.end_seconds, p.row, p.column)
            for p in response.parts
        ),
        (response.grid_rows, response.grid_columns),
        response.method,
    )


def _statuses(response: pb.ModelStatusResponse) -> list[ModelStatus]:
    return [
        ModelStatus(
            m.name,
            tuple(
                VersionStatus(
                    v.version,
                    pb.VersionStatus.State.Name(v.state),
                    v.error,
                    v.engine,
                    v.precision,
                    v.kind,
                    tuple(v.features),
                    v.engine_reason,
                    tuple(v.labels),
                )
                for v in m.versions
            ),
            m.name == response.default_model,
        )
        for m in response.models
    ]


# struct formats of the OIP v2 numeric datatypes (raw contents are little-endian).
_FORMATS = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
# The typed field of the v2 contents that holds each datatype, for answers without raw.
_CONTENTS = {
    "BOOL": "bool_contents",
    "UINT64": "uint64_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
    **dict.fromkeys(("UINT8", "UINT16", "UINT32"), "uint_contents"),
    **dict.fromkeys(("INT8", "INT16", "INT32"), "int_contents"),
}


def _raw(tensor: Tensor) -> bytes:
    """A tensor's values in the protocol's raw layout."""
    if tensor.datatype == "BYTES":
        elements = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in tensor.values]
        return b"".join(struct.pack("<I", len(e)) + e for e in elements)
    fmt = _FORMATS.get(tensor.datatype)
    if fmt is None:
        raise ConfigError(f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}")
    return struct.pack(f"<{len(tensor.values)}{fmt}", *tensor.values)


def _infer_request(
    inputs: Sequence[Tensor], model_name: str, model_version: int, outputs: Sequence[str]
) -> v2.ModelInferRequest:
    request = v2.ModelInferRequest(
        model_name=model_name, model_version=str(model_version) if model_version else ""
    )
    for tensor in inputs:
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        request.raw_input_contents.append(_raw(tensor))
    for name in outputs:
        request.outputs.add(name=name)
    return request


def _values(
    datatype: str, shape: Sequence[int], raw: bytes | None, contents: Any
) -> tuple[Any, ...]:
    """An output's values, from its raw bytes or its typed contents."""
    if raw is None:
        return tuple(getattr(contents, _CONTENTS[datatype]))
    if datatype == "BYTES":
        out, offset = [], 0
        while offset < len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            out.append(raw[offset + 4 : offset + 4 + length])
            offset += 4 + length
        return tuple(out)
    fmt = _FORMATS[datatype]
    return struct.unpack(f"<{math.prod(shape)}{fmt}", raw)


def _inference(response: v2.ModelInferResponse) -> Inference:
    raw = list(response.raw_output_contents)
    outputs = []
    for i, out in enumerate(response.outputs):
        shape = tuple(out.shape)
        data = raw[i] if i < len(raw) else None
        outputs.append(
            Tensor(out.name, out.datatype, shape, _values(out.datatype, shape, data, out.contents))
        )
    return Inference(tuple(outputs), response.model_name, int(response.model_version or 0))


def _remote_error(error: grpc.RpcError, address: str) -> RemoteError:
    # Sync errors are grpc.Call; asyncio ones (AioRpcError) are not, but have the same methods.
    has_status = isinstance(error, grpc.Call | grpc.aio.AioRpcError)
    code = error.code() if has_status else grpc.StatusCode.UNKNOWN
    details = (error.details() if has_status else None) or str(error)
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        details = f"the server at {address} is not reachable: {details}"
    too_large = _TOO_LARGE.search(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and too_large:
        size, limit = (int(n) / 2**20 for n in too_large.groups())
        details = (
            f"the request is {size:.3g} MiB, over the server's limit of {limit:.3g} MiB "
            "(its --max_request_mib); send a smaller input"
        )
    return RemoteError(code.name, details)


# gRPC's own words for a message over `grpc.max_receive_message_length`.
_TOO_LARGE = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")


class Client:
    """Blocking client for `ClassificationService`. Raises RemoteError on any failed call.

    `address` may list several servers (`a:9999,b:9999`) or be a `dns:///` name; calls
    are balanced round-robin and retried on another server when one is unavailable.
    `auth_token` is sent with every call, for a server started with `--auth_token_file`.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout: float = 30.0,
        tls: ClientTLS | None = None,
        auth_token: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = _channel(address, tls, aio=False, token=auth_token)
        self._stub = pb_grpc.ClassificationServiceStub(self._channel)
        self._v2 = v2_grpc.GRPCInferenceServiceStub(self._channel)

    def classify(
        self,
        image: bytes = b"",
        model_name: str = "",
        model_version: int = 0,
        top_k: int = 0,
        features: Mapping[str, float] | None = None,
        timeout: float | None = None,
        label: str = "",
    ) -> Classification:
        """Classify an encoded image (or named features); classes come back best first.

        `label` asks for the version a version label names, instead of `model_version`.
        """
        request = _request(image, model_name, model_version, top_k, features or {}, label)
        try:
            response = self._stub.classify(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _result(response)

    def explain(
        self,
        image: bytes = b"",
        model_name: str = "",
        model_version: int = 0,
        features: Mapping[str, float] | None = None,
        timeout: float | None = None,
        label: str = "",
        class_name: str = "",
    ) -> Explanation:
        """Why the model gives `class_name` (empty: its top class) for this input: the
        input's parts, each weighted by how much hiding it lowers that class's probability.

        Same inputs as `classify`; a tensor model has no explanations (FAILED_PRECONDITION).
        """
        request = _explain_request(
            image, model_name, model_version, features or {}, label, class_name
        )
        try:
            response = self._stub.explain(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _explanation(response)

    def model_status(self, model_name: str = "", timeout: float | None = None) -> list[ModelStatus]:
        """Every version's lifecycle state, per model (every model when the name is empty)."""
        request = pb.ModelStatusRequest(model_name=model_name)
        try:
            response = self._stub.get_model_status(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _statuses(response)

    def labelled_version(
        self, model_name: str, label: str, timeout: float | None = None
    ) -> tuple[str, int]:
        """The model (empty: the server's default) and the version `label` names now, from
        the status: for `predict`, whose protocol (OIP v2) has no labels."""
        statuses = self.model_status(model_name, timeout)
        model = next((m for m in statuses if m.default or model_name), None)
        if model is None:
            raise RemoteError("NOT_FOUND", f"model {model_name!r} is not served here")
        labels = sorted({name for v in model.versions for name in v.labels})
        for v in model.versions:
            if label in v.labels:
                return model.name, v.version
        known = ", ".join(labels) or "none"
        raise RemoteError(
            "NOT_FOUND", f"model {model.name!r} has no version label {label!r} (labels: {known})"
        )

    def predict(
        self,
        inputs: Sequence[Tensor],
        model_name: str = "",
        model_version: int = 0,
        outputs: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Inference:
        """Run a tensor model (OIP v2 `ModelInfer`): named inputs in, its outputs back (all of
        them unless `outputs` names some)."""
        request = _infer_request(inputs, model_name, model_version, outputs)
        try:
            response = self._v2.ModelInfer(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _inference(response)

    def model_tensors(
        self, model_name: str = "", model_version: int = 0, timeout: float | None = None
    ) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """The inputs and outputs of a model as OIP v2 describes them (`ModelMetadata`)."""
        request = v2.ModelMetadataRequest(
            name=model_name, version=str(model_version) if model_version else ""
        )
        try:
            meta = self._v2.ModelMetadata(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        inputs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in meta.inputs)
        outputs = tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in meta.outputs)
        return inputs, outputs

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """asyncio client for `ClassificationService`, balanced and retried as `Client` is.

    Raises RemoteError on any failed call.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout: float = 30.0,
        tls: ClientTLS | None = None,
        auth_token: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = _channel(address, tls, aio=True, token=auth_token)
        self._stub = pb_grpc.ClassificationServiceStub(self._channel)

    async def classify(
        self,
        image: bytes = b"",
        model_name: str = "",
        model_version: int = 0,
        top_k: int = 0,
        features: Mapping[str, float] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the gRPC deadline
        label: str = "",
    ) -> Classification:
        """Classify an encoded image (or named features); classes come back best first.

        `label` asks for the version a version label names, instead of `model_version`.
        """
        request = _request(image, model_name, model_version, top_k, features or {}, label)
        try:
            response = await self._stub.classify(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _result(response)

    async def explain(
        self,
        image: bytes = b"",
        model_name: str = "",
        model_version: int = 0,
        features: Mapping[str, float] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the gRPC deadline
        label: str = "",
        class_name: str = "",
    ) -> Explanation:
        """Why the model gives `class_name` (empty: its top class) for this input: the
        input's parts, each weighted by how much hiding it lowers that class's probability.

        Same inputs as `classify`; a tensor model has no explanations (FAILED_PRECONDITION).
        """
        request = _explain_request(
            image, model_name, model_version, features or {}, label, class_name
        )
        try:
            response = await self._stub.explain(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _explanation(response)

    async def model_status(
        self,
        model_name: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - sent to the server as the gRPC deadline
    ) -> list[ModelStatus]:
        """Every version's lifecycle state, per model (every model when the name is empty)."""
        request = pb.ModelStatusRequest(model_name=model_name)
        try:
            response = await self._stub.get_model_status(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _remote_error(exc, self.address) from None
        return _statuses(response)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
