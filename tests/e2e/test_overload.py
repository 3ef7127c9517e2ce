"""Overload and deadlines on a real server: a small queue bound turns requests away at
once with RESOURCE_EXHAUSTED, expired requests cost no inference, and everyone else is served.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyserving.client import AsyncClient, Client
from pyserving.errors import RemoteError
from tests.conftest import encode
from tests.processes import RunningProcess, free_port, start_server, wait_for
from tests.scrape import metric_sum, scrape

EGYPTIAN_CAT = 285


@pytest.fixture(scope="module")
def small_queue_server(
    imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A server whose batcher holds one running and one waiting input: (gRPC, REST)."""
    log = tmp_path_factory.mktemp("overload") / "server.log"
    rest = free_port()
    server: RunningProcess = start_server(
        "imagenet",
        imagenet_repository / "imagenet",
        log,
        "--rest_api_port",
        str(rest),
        "--max_batch_size=1",
        "--max_enqueued_batches=1",
    )
    yield f"127.0.0.1:{server.match.group(1)}", f"http://127.0.0.1:{rest}"
    server.stop()


def test_full_queue_turns_requests_away_and_serves_the_rest(
    small_queue_server: tuple[str, str], chelsea_jpeg: bytes
) -> None:
    address, rest = small_queue_server

    async def load() -> Counter[str]:
        outcomes: Counter[str] = Counter()
        async with AsyncClient(address, timeout=30) as client:

            async def one() -> None:
                try:
                    result = await client.classify(chelsea_jpeg)
                except RemoteError as exc:
                    outcomes[exc.grpc_code] += 1
                    if exc.grpc_code == "RESOURCE_EXHAUSTED":
                        assert "the batching queue is full" in str(exc)
                else:
                    assert result.predictions[0].index == EGYPTIAN_CAT
                    outcomes["OK"] += 1

            await asyncio.gather(*(one() for _ in range(48)))
        return outcomes

    def rejections() -> float:
        return metric_sum(scrape(rest), "pyserving_requests_total", code="RESOURCE_EXHAUSTED")

    rejected_before = rejections()
    outcomes = asyncio.run(load())
    assert set(outcomes) == {"OK", "RESOURCE_EXHAUSTED"}, outcomes
    assert outcomes["OK"] >= 2 and sum(outcomes.values()) == 48
    assert rejections() - rejected_before == outcomes["RESOURCE_EXHAUSTED"]
    with Client(address) as client:  # the overload left nothing behind
        assert client.classify(chelsea_jpeg).predictions[0].index == EGYPTIAN_CAT


def test_request_whose_deadline_passes_costs_no_inference(
    small_queue_server: tuple[str, str], chelsea: np.ndarray
) -> None:
    address, rest = small_queue_server
    # Decoding a 12-megapixel photo takes longer than the deadline.
    photo = encode(np.asarray(Image.fromarray(chelsea).resize((4000, 3000))), "JPEG", quality=90)
    inferences = "pyserving_inference_seconds_count"
    given_up = ("CANCELLED", "DEADLINE_EXCEEDED")  # the server's view: either, by timing

    def counts() -> tuple[float, float]:
        seen = sum(metric_sum(scrape(rest), "pyserving_requests_total", code=c) for c in given_up)
        return seen, metric_sum(scrape(rest), inferences, model="imagenet")

    with Client(address) as client:
        assert client.classify(photo).predictions[0].index == EGYPTIAN_CAT  # connected
        seen_before, inferred_before = counts()
        for _ in range(5):
            with pytest.raises(RemoteError) as info:
                client.classify(photo, timeout=0.006)
            assert info.value.grpc_code == "DEADLINE_EXCEEDED"
        # Some reached the server (the rest expired on the way), which gave up on them
        # without running the model.
        wait_for(lambda: counts()[0] > seen_before, 10, "the server to give up on a request")
        assert counts()[1] == inferred_before
        assert client.classify(photo).predictions[0].index == EGYPTIAN_CAT
    assert counts()[1] == inferred_before + 1
