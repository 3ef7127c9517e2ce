"""Shutdown under load, seen by clients that do not retry: nothing ends but OK or UNAVAILABLE.

The clients are plain generated stubs (as the seed's client and most third-party ones are):
no retry policy, no wait-for-ready. gRPC cancels calls it had received but not yet handed
to a handler when `server.stop()` begins (grpc/grpc#41785); the server must not let any
client see that.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from tests.onnx_models import png, publish, write_image_servable
from tests.processes import RunningProcess, free_port, start_server, wait_for

ROUNDS = 20
THREADS = 12
RED = png((220, 10, 10))
PNG = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("drain") / "colours"
    publish(base, 1, write_image_servable)
    return base


class Load:
    """THREADS plain stubs calling `classify` in a loop until told to stop."""

    def __init__(self, address: str) -> None:
        self.codes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(address,)) for _ in range(THREADS)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def count(self, code: str) -> int:
        with self._lock:
            return self.codes[code]

    def _run(self, address: str) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.ClassificationServiceStub(channel)
            request = pb.ClassificationRequest(input=RED)
            while not self._stop.is_set():
                try:
                    stub.classify(request, timeout=10)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with self._lock:
                    self.codes[code] += 1


def test_sigterm_under_load_ends_every_call_ok_or_unavailable(
    colours: Path, tmp_path: Path
) -> None:
    total: Counter[str] = Counter()
    rng = random.Random(0)
    for round_ in range(ROUNDS):
        server = start_server("colours", colours, tmp_path / f"server{round_}.log")
        with Load(f"127.0.0.1:{server.match.group(1)}") as load:
            answered = rng.randrange(20, 400)
            wait_for(lambda: load.count("OK") >= answered, 30, f"{answered} answers")  # noqa: B023
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(30) == 0, server.output()
        total += load.codes
        assert set(load.codes) <= {"OK", "UNAVAILABLE"}, (round_, load.codes, server.output())
        assert "refusing new requests" in server.output()
    print(f"{ROUNDS} SIGTERMs under load: {dict(total)}")
    assert total["OK"] >= ROUNDS * 20


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)


def test_the_drain_serves_while_health_says_not_serving_then_refuses(
    colours: Path, tmp_path: Path
) -> None:
    rest_port = free_port()
    server: RunningProcess = start_server(
        "colours",
        colours,
        tmp_path / "server.log",
        "--rest_api_port",
        str(rest_port),
        "--drain_seconds",
        "30",
    )
    address = f"127.0.0.1:{server.match.group(1)}"
    with (
        grpc.insecure_channel(address) as channel,
        httpx.Client(base_url=f"http://127.0.0.1:{rest_port}", timeout=10) as http,
    ):
        stub = pb_grpc.ClassificationServiceStub(channel)
        request = pb.ClassificationRequest(input=RED)
        assert stub.classify(request, timeout=10).classes[0].name == "red"
        server.process.send_signal(signal.SIGTERM)
        wait_for(
            lambda: _health(address) == health_pb2.HealthCheckResponse.NOT_SERVING,
            10,
            "NOT_SERVING",
        )
        assert http.get("/v2/health/ready").status_code == 503
        # Draining: still served, over both ports.
        assert stub.classify(request, timeout=10).classes[0].name == "red"
        served = http.post("/v1/models/colours:classify", content=RED, headers=PNG)
        assert served.status_code == 200, served.text
        assert server.process.poll() is None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # a second signal ends the drain at once

        def refused() -> httpx.Response | None:
            answer = http.post("/v1/models/colours:classify", content=RED, headers=PNG)
            return answer if answer.status_code == 503 else None

        answer = wait_for(refused, 10, "503 from REST")
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["connection"] == "close"
        assert "shutting down" in answer.json()["error"]
        assert server.process.wait(20) == 0
        assert time.monotonic() - started < 10
    assert "still serving for 30.0 s (--drain_seconds)" in server.output()
