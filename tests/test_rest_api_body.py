"""The REST adapters' body parsing: large bodies are parsed off the event loop."""

from __future__ import annotations

import threading

from pyserving.rest_api.body import OFF_LOOP_BYTES, parse_body


async def test_small_bodies_are_parsed_inline_and_large_ones_in_a_thread() -> None:
    def parsed_in(body: bytes) -> tuple[int, int]:
        return len(body), threading.get_ident()

    loop_thread = threading.get_ident()
    small = await parse_body(b"x" * (OFF_LOOP_BYTES - 1), parsed_in)
    large = await parse_body(b"x" * OFF_LOOP_BYTES, parsed_in)
    assert small == (OFF_LOOP_BYTES - 1, loop_thread)
    assert large[0] == OFF_LOOP_BYTES and large[1] != loop_thread
