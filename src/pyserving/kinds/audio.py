"""Audio models: an encoded clip in, mono float32 samples at the model's rate out.

`servable.json` input section: `{"name", "dtype": "float32", "sample_rate": 16000}`. The
graph takes `[N, T]`: N clips of T samples. Clips are decoded with libsndfile (through
`soundfile`: WAV, FLAC, OGG Vorbis, Opus, MP3 and the other formats it reads), mixed to
mono and resampled with `soxr`. A clip's length is read from its header and refused when
over `--max_audio_seconds` before it is decoded: a small compressed file can hold hours
of silence. Clips of different lengths cannot be stacked: the batcher stacks only inputs of
one shape, so a clip shares an inference call only with clips as long as itself.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from pyserving.errors import InvalidInput, MissingExtra, ServableError
from pyserving.kinds.base import (
    CLASSES,
    Batch,
    Description,
    Limits,
    Occlusion,
    Prepare,
    Wire,
    check_explain_size,
    fields_of,
)
from pyserving.results import ExplanationPart
from pyserving.signature import Fail, Signature, classes_json

if TYPE_CHECKING:
    from pyserving.engines.base import TensorInfo
    from pyserving.results import Example

OFF_LOOP = True  # decoding and resampling a clip take milliseconds
OUTPUT = CLASSES  # scores over the classes of labels.txt
DTYPE = "float32"
FORMATS = "WAV, FLAC, OGG Vorbis, Opus or MP3"
MIN_RATE, MAX_RATE = 1_000, 384_000  # samples per second a clip or a model may have
BLOCK_SAMPLES = 1 << 20  # frames × channels decoded at a time, so many channels stay bounded
EXTRA = "audio"  # the extra that installs soundfile and soxr
WINDOW_SECONDS = 0.5  # an explanation silences the clip this much at a time


@dataclass(frozen=True)
class AudioFields:
    """An audio model's own fields: the samples per second the graph takes."""

    sample_rate: int

    def input_json(self) -> dict[str, Any]:
        """The audio fields as `servable.json` writes them."""
        return {"sample_rate": self.sample_rate}

    def output_json(self, signature: Signature) -> dict[str, Any]:
        """Scores over the classes of labels.txt."""
        return classes_json(signature)


def parse(doc: dict[str, Any], fail: Fail) -> AudioFields:
    """The audio fields of the signature, checked."""
    section = doc["input"]
    if section.get("dtype") != DTYPE:
        raise fail(f"input.dtype {section.get('dtype')!r} must be {DTYPE!r} for an audio model")
    rate = section.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise fail(
            f"input.sample_rate must be an integer from {MIN_RATE:,} to {MAX_RATE:,} "
            f"samples per second, got {rate!r}"
        )
    return AudioFields(rate)


def describe(signature: Signature) -> Description:
    """Nothing beyond the wire type: clips are resampled to the model's rate."""
    return Description()


def row_shape(signature: Signature, engine_input: TensorInfo) -> tuple[int, ...]:
    """One clip: samples, any number (-1). The graph must take [N, T]."""
    if len(engine_input.shape) != 2:
        raise ServableError(
            f"input {engine_input.name!r} has shape {list(engine_input.shape)}; an audio "
            "model takes [N, T]: N clips of T samples"
        )
    return (-1,)


def warm_up(signature: Signature, row_shape: tuple[int, ...]) -> np.ndarray:
    """One second of silence; MissingExtra when the decoders are not installed."""
    _codecs()
    return np.zeros((1, _rate(signature)), dtype=np.float32)


def prepare(
    signature: Signature, example: Example, limits: Limits, row_shape: tuple[int, ...]
) -> np.ndarray:
    """Decode the example's clip (in `input`). CPU work: call it in the thread pool."""
    if example.features:
        raise InvalidInput("this model takes an audio clip in `input`, not features")
    return decode_clip(example.image, _rate(signature), limits.max_audio_seconds)


def prepare_batch(
    signature: Signature, batch: Batch, limits: Limits, row_shape: tuple[int, ...]
) -> list[Prepare]:
    """One decode per encoded clip."""
    if batch.images is None:
        raise InvalidInput(f"this model takes encoded audio clips (BYTES): {FORMATS}")
    return [
        partial(decode_clip, c, _rate(signature), limits.max_audio_seconds) for c in batch.images
    ]


def wire(signature: Signature) -> Wire:
    """Encoded clips: BYTES [N]."""
    return Wire("BYTES", (-1,))


def occlusions(signature: Signature, row: np.ndarray, limits: Limits) -> Occlusion:
    """The clip with each WINDOW_SECONDS window silenced in turn, then with each window
    alone kept, then all silent.

    A clip classifier often pools over time (Silero VAD's speech score is its best 256 ms),
    so silencing one window of a long sound changes nothing: the window's weight is the
    mean of what silencing it costs and what keeping it alone gives (`_both_ways`).
    """
    rate = _rate(signature)
    step = max(1, round(WINDOW_SECONDS * rate))
    starts = list(range(0, len(row), step))
    check_explain_size(2 * len(starts) + 1, "windows (silenced, then kept alone)", limits)
    silenced, kept, parts = [], [], []
    for start in starts:
        end = min(start + step, len(row))
        hidden = row.copy()
        hidden[start:end] = 0
        silenced.append(hidden)
        alone = np.zeros_like(row)
        alone[start:end] = row[start:end]
        kept.append(alone)
        parts.append(ExplanationPart(0.0, start=start / rate, end=end / rate))
    rows = (*silenced, *kept, np.zeros_like(row))
    method = f"each {WINDOW_SECONDS:g} s window silenced, and kept alone"
    return Occlusion(rows, tuple(parts), weigh=_both_ways, method=method)


def _both_ways(original: float, hidden: np.ndarray) -> np.ndarray:
    """Per window: the mean of p(clip) - p(window silenced) and p(window alone) - p(silence)."""
    windows = (len(hidden) - 1) // 2
    silenced, alone, silence = hidden[:windows], hidden[windows:-1], hidden[-1]
    return np.asarray(((original - silenced) + (alone - silence)) / 2)


def decode_clip(data: bytes, rate: int, max_seconds: float) -> np.ndarray:
    """The clip in `data` as mono float32 samples at `rate`, shape [T].

    Raises InvalidInput saying what was found: no data, a format libsndfile does not read,
    a clip over `max_seconds` (read from the header, before decoding), a broken stream.
    """
    sf, soxr = _codecs()
    if not data:
        raise InvalidInput(f"the audio clip is empty (0 bytes): send a {FORMATS} file")
    try:
        clip = sf.SoundFile(io.BytesIO(data))
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        raise InvalidInput(
            f"could not decode audio ({len(data):,} bytes, starts with {data[:12]!r}): "
            f"{_reason(exc)}; expected {FORMATS}"
        ) from None
    with clip:
        channels = "1 channel" if clip.channels == 1 else f"{clip.channels} channels"
        found = f"{clip.format} {clip.subtype}, {clip.samplerate:,} Hz, {channels}"
        if not MIN_RATE <= clip.samplerate <= MAX_RATE:
            raise InvalidInput(
                f"the clip ({found}) has a sample rate outside {MIN_RATE:,}–{MAX_RATE:,} Hz"
            )
        # The header's length; reading stops one frame past the limit in case it lies.
        limit = math.floor(max_seconds * clip.samplerate)
        if clip.frames > limit:
            raise InvalidInput(
                f"the clip is {clip.frames / clip.samplerate:,.1f} s long ({found}), over "
                f"the limit of {max_seconds:g} s (--max_audio_seconds)"
            )
        mono = _read_mono(sf, clip, limit + 1, found)
    if len(mono) > limit:
        raise InvalidInput(
            f"the clip decodes to more than {max_seconds:g} s ({found}), over the limit "
            "(--max_audio_seconds)"
        )
    frames = len(mono)
    if not frames:
        raise InvalidInput(f"the audio clip holds no samples ({found})")
    if not np.isfinite(mono).all():
        raise InvalidInput(f"the audio clip holds NaN or infinite samples ({found})")
    if clip.samplerate != rate:
        mono = soxr.resample(mono, clip.samplerate, rate)
        if not len(mono):
            raise InvalidInput(
                f"the audio clip is too short: {frames:,} frame(s) ({found}) make no sample "
                f"at {rate:,} Hz"
            )
    return np.ascontiguousarray(mono, dtype=np.float32)


def _read_mono(sf: Any, clip: Any, most: int, found: str) -> np.ndarray:
    """At most `most` frames of `clip`, channels averaged, decoded a block at a time."""
    block = max(1024, BLOCK_SAMPLES // max(1, clip.channels))
    parts: list[np.ndarray] = []
    frames = 0
    try:
        while frames < most:
            samples = clip.read(min(block, most - frames), dtype="float32", always_2d=True)
            if not len(samples):
                break
            parts.append(samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0])
            frames += len(samples)
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        raise InvalidInput(
            f"the audio clip ({found}) is broken after {frames:,} frames: {_reason(exc)}"
        ) from None
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _reason(exc: Exception) -> str:
    """libsndfile's own words for what went wrong."""
    words = getattr(exc, "error_string", "") or str(exc)
    return f"libsndfile says {words.strip().rstrip('.')!r}"


def _codecs() -> tuple[Any, Any]:
    """`soundfile` and `soxr`; MissingExtra naming the extra when they are missing."""
    try:
        import soundfile
        import soxr
    except (ImportError, OSError) as exc:  # OSError: soundfile without its libsndfile
        name = getattr(exc, "name", None) or "libsndfile"
        raise MissingExtra(name, EXTRA, "an audio model") from None
    return soundfile, soxr


def _rate(signature: Signature) -> int:
    return fields_of(signature, AudioFields).sample_rate
