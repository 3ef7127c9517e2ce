"""Ask a model server's gRPC health service whether it is SERVING: for container probes.

`pyserving health --server ADDR [--service NAME]` exits 0 when the answer is SERVING and 1
otherwise (Docker's HEALTHCHECK reserves 2), so the image needs no separate probe binary.
Kubernetes asks the same service itself with `grpc:` probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass(frozen=True)
class HealthAnswer:
    """What a health check found: a `grpc.health.v1` status, or the code of a failed call."""

    status: str  # SERVING, NOT_SERVING, SERVICE_UNKNOWN; else a gRPC code such as UNAVAILABLE
    detail: str = ""

    @property
    def serving(self) -> bool:
        return self.status == "SERVING"

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status


def check_health(
    address: str,
    service: str = "",
    timeout: float = 3.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> HealthAnswer:
    """Ask the server at `address` about `service` ("" is the whole server), once.

    `credentials` make it a TLS channel (for a server started with --ssl_cert). Never
    raises for a server that is down, slow or does not know `service`: the answer says so
    (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, `NOT_FOUND`), since a probe only needs to tell
    healthy from not, and why.
    """
    request = health_pb2.HealthCheckRequest(service=service)
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            what = f"health of {service!r} at {address}" if service else f"health of {address}"
            return HealthAnswer(code.name, f"{what}: {details}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return HealthAnswer(str(status))
