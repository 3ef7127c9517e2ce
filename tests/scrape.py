"""Read a running server's Prometheus metrics the way a scraper would."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(rest: str) -> str:
    """The text of `/metrics` on the REST base URL `rest`."""
    return httpx.get(f"{rest}/metrics", timeout=10).text


def metric_sum(text: str, sample_name: str, **labels: str) -> float:
    """The sum of the samples named `sample_name` whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )
