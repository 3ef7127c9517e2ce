"""The `--engines` pairs (engine:precision): which ones this machine can run, and which one
an `auto` server chose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyserving.core.settings import ENGINE_CHOICES, PRECISION_CHOICES
from pyserving.engines import ENGINES, engine_module
from pyserving.errors import ServableError

AUTO = "auto"
# The line a server logs per version, e.g. "model imagenet version 3 runs on engine openvino f32".
_CHOSEN = re.compile(r"\bengine (" + "|".join(ENGINES) + r") (\w+)\b")


@dataclass(frozen=True)
class EnginePair:
    """An engine and a precision, either of which may be `auto` (the server decides)."""

    engine: str
    precision: str

    @property
    def label(self) -> str:
        return f"engine {self.engine} {self.precision}"

    @property
    def concrete(self) -> bool:
        """Whether it names what runs, so that it can run in process without a server."""
        return AUTO not in (self.engine, self.precision)

    def server_flags(self) -> tuple[str, ...]:
        return ("--engine", self.engine, "--precision", self.precision)


def parse_pairs(text: str) -> tuple[EnginePair, ...]:
    """`onnxruntime:f32,auto:auto` as pairs; SystemExit naming the bad one."""
    pairs: list[EnginePair] = []
    for item in (i.strip() for i in text.split(",")):
        engine, _, precision = item.partition(":")
        if engine not in ENGINE_CHOICES or precision not in PRECISION_CHOICES:
            raise SystemExit(
                f"error: --engines takes ENGINE:PRECISION pairs, comma-separated (engines "
                f"{', '.join(ENGINE_CHOICES)}; precisions {', '.join(PRECISION_CHOICES)}), "
                f"got {item!r}"
            )
        pair = EnginePair(engine, precision)
        if pair not in pairs:
            pairs.append(pair)
    return tuple(pairs)


def skip_reason(pair: EnginePair) -> str | None:
    """Why this machine cannot run the pair (None: it can, or an `auto` server will say)."""
    if pair.engine == AUTO:
        if pair.precision == AUTO:
            return None
        if any(pair.precision in _runs(name) for name in ENGINES):
            return None
        return f"no installed engine runs {pair.precision} on this CPU"
    try:
        module = engine_module(pair.engine)
    except ServableError as exc:
        return str(exc)
    missing = module.available()
    if missing:
        return missing
    if pair.precision != AUTO and pair.precision not in module.precisions():
        return (
            f"{pair.engine} cannot run {pair.precision} on this CPU "
            f"(it runs {', '.join(module.precisions())})"
        )
    return None


def _runs(name: str) -> tuple[str, ...]:
    module = engine_module(name)
    return () if module.available() else module.precisions()


def chosen(pair: EnginePair, server_log: str) -> EnginePair | None:
    """What the pair runs as: itself if concrete, else what its server's log says it chose."""
    if pair.concrete:
        return pair
    match = _CHOSEN.search(server_log)
    return None if match is None else EnginePair(match.group(1), match.group(2))
