"""Prometheus metrics: the only globals in pyserving. Named `pyserving_*`, units in names.

Labels stay bounded: `model` is a configured model name (or empty), `version` a loaded
version, `api` one of the wire adapters' names, `code` a gRPC status name, `label` a
version label the config file names (an unknown one is refused before it is counted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from pyserving.errors import PyservingError

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "pyserving_requests",
    "Requests by model, version, API and status code.",
    ["model", "version", "api", "code"],
    registry=REGISTRY,
)
LABEL_REQUESTS = Counter(
    "pyserving_version_label_requests",
    "Requests that named a version label the model has, by model, label and status code.",
    ["model", "label", "code"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "pyserving_request_seconds",
    "Whole-request latency inside the server.",
    ["model", "api"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
PREPROCESS_SECONDS = Histogram(
    "pyserving_preprocess_seconds",
    "Decoding and resizing one input.",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
QUEUE_SECONDS = Histogram(
    "pyserving_queue_wait_seconds",
    "Time an input waited in the batching queue.",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "pyserving_inference_seconds",
    "One ONNX Runtime call on a batch.",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "pyserving_batch_size",
    "Inputs per ONNX Runtime call.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)


@dataclass(frozen=True)
class VersionLoad:
    """What the gauges show for one available version, read at scrape time."""

    model: str
    version: int
    engine: str
    precision: str
    queue_depth: int
    in_flight: int


class LoadCollector:
    """Gauges read at scrape time: versions loaded, queue depth, in flight, engine."""

    def __init__(self, read: Callable[[], Iterable[VersionLoad]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        loaded = GaugeMetricFamily(
            "pyserving_loaded_versions", "Versions available per model.", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "pyserving_queue_depth", "Inputs waiting in batching queues.", labels=["model"]
        )
        in_flight = GaugeMetricFamily(
            "pyserving_in_flight_requests", "Requests being served.", labels=["model"]
        )
        engines = GaugeMetricFamily(
            "pyserving_version_engine",
            "1 for each available version, labelled with the engine and precision it runs on.",
            labels=["model", "version", "engine", "precision"],
        )
        per_model: dict[str, list[VersionLoad]] = {}
        for v in self._read():
            per_model.setdefault(v.model, []).append(v)
            engines.add_metric([v.model, str(v.version), v.engine, v.precision], 1)
        for name, versions in per_model.items():
            loaded.add_metric([name], len(versions))
            queued.add_metric([name], sum(v.queue_depth for v in versions))
            in_flight.add_metric([name], sum(v.in_flight for v in versions))
        return [loaded, queued, in_flight, engines]


def watch(read: Callable[[], Iterable[VersionLoad]]) -> None:
    """Export the gauges that `read` returns at every scrape (once per process)."""
    REGISTRY.register(LoadCollector(read))


def exposition() -> bytes:
    """The Prometheus text format of every pyserving metric."""
    return generate_latest(REGISTRY)


@dataclass
class Request:
    """One request being timed; the adapter fills in the model and version it learns."""

    api: str
    model: str = ""
    version: str = ""
    code: str = "OK"
    label: str = ""  # a version label of the model that the request named


@contextmanager
def track(api: str, known_models: Container[str] = ()) -> Iterator[Request]:
    """Count and time a request. PyservingErrors set the code and propagate.

    A model name the server does not know is recorded as "" so labels stay bounded.
    """
    request = Request(api)
    started = time.perf_counter()
    try:
        yield request
    except PyservingError as exc:
        request.code = exc.grpc_code
        raise
    except asyncio.CancelledError:  # the client went away, or its deadline passed
        request.code = "CANCELLED"
        raise
    except Exception:
        if request.code == "OK":  # an adapter may have set it before aborting the call
            request.code = "INTERNAL"
        raise
    finally:
        if request.model not in known_models:
            request.model, request.version = "", ""
        REQUESTS.labels(request.model, request.version, api, request.code).inc()
        if request.label and request.model:
            LABEL_REQUESTS.labels(request.model, request.label, request.code).inc()
        REQUEST_SECONDS.labels(request.model, api).observe(time.perf_counter() - started)
