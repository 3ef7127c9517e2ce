"""Request tracking and the scrape-time gauges, on plain values."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from pyserving.core import metrics
from pyserving.errors import QueueFull


def count(api: str, code: str, model: str = "", version: str = "") -> float:
    labels = {"model": model, "version": version, "api": api, "code": code}
    return metrics.REGISTRY.get_sample_value("pyserving_requests_total", labels) or 0.0


def test_track_records_the_outcome_of_each_request() -> None:
    with metrics.track("m_ok", {"m"}) as tracked:
        tracked.model, tracked.version = "m", "3"
    with pytest.raises(QueueFull), metrics.track("m_full", {"m"}) as tracked:
        tracked.model = "m"
        raise QueueFull("full")
    with pytest.raises(asyncio.CancelledError), metrics.track("m_gone", {"m"}):
        raise asyncio.CancelledError
    with pytest.raises(KeyError), metrics.track("m_bug", {"m"}):
        raise KeyError("bug")
    assert count("m_ok", "OK", "m", "3") == 1
    assert count("m_full", "RESOURCE_EXHAUSTED", "m") == 1
    assert count("m_gone", "CANCELLED") == 1
    assert count("m_bug", "INTERNAL") == 1
    seconds = {"model": "m", "api": "m_ok"}
    assert metrics.REGISTRY.get_sample_value("pyserving_request_seconds_count", seconds) == 1


def test_an_unknown_model_is_recorded_without_its_name() -> None:
    with metrics.track("m_unknown", {"m"}) as tracked:
        tracked.model, tracked.version = "made-up", "1"
    assert count("m_unknown", "OK") == 1


def test_gauges_are_read_from_plain_values_at_scrape_time() -> None:
    loads = [
        metrics.VersionLoad("a", 1, "onnxruntime", "f32", queue_depth=2, in_flight=1),
        metrics.VersionLoad("a", 2, "openvino", "bf16", queue_depth=3, in_flight=0),
    ]
    registry = CollectorRegistry()
    registry.register(metrics.LoadCollector(lambda: loads))
    assert registry.get_sample_value("pyserving_loaded_versions", {"model": "a"}) == 2
    assert registry.get_sample_value("pyserving_queue_depth", {"model": "a"}) == 5
    assert registry.get_sample_value("pyserving_in_flight_requests", {"model": "a"}) == 1
    engine = {"model": "a", "version": "2", "engine": "openvino", "precision": "bf16"}
    assert registry.get_sample_value("pyserving_version_engine", engine) == 1
    loads.clear()
    assert registry.get_sample_value("pyserving_loaded_versions", {"model": "a"}) is None
