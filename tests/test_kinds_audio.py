"""The audio kind: its servable.json section, decoding every format, mono, resampling, limits."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pyserving.cli.main import build_parser
from pyserving.cli.serve import serve_settings
from pyserving.engines import TensorInfo
from pyserving.errors import ConfigError, InvalidInput, ServableError
from pyserving.kinds import audio, kind_module, load_signature, write_signature
from pyserving.kinds.base import Batch, Limits
from pyserving.results import Example
from pyserving.signature import Signature
from tests.audio_clips import encode, long_silence_flac, tone

SIG = Signature(
    kind="audio",
    input_name="samples",
    input_dtype="float32",
    output_name="probabilities",
    scores="probabilities",
    labels=("speech", "no speech"),
    top_k=2,
    fields=audio.AudioFields(16000),
)
LIMITS = Limits(max_audio_seconds=5)


def fail(problem: str) -> ServableError:
    return ServableError(problem)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_the_section_round_trips_and_is_checked() -> None:
    section = {"dtype": "float32", **SIG.fields.input_json()}
    assert section == {"dtype": "float32", "sample_rate": 16000}
    assert audio.parse({"input": section}, fail) == audio.AudioFields(16000)
    with pytest.raises(ServableError, match="must be 'float32' for an audio model"):
        audio.parse({"input": {"dtype": "int16", "sample_rate": 16000}}, fail)
    for rate in (None, 0, 999, 400_000, "16000", True, 16000.0):
        with pytest.raises(ServableError, match="sample_rate must be an integer from 1,000"):
            audio.parse({"input": {"dtype": "float32", "sample_rate": rate}}, fail)
    assert kind_module("audio") is audio


def test_an_audio_signature_is_written_and_read_back(tmp_path: Path) -> None:
    write_signature(SIG, tmp_path)
    doc = json.loads((tmp_path / "servable.json").read_text())
    assert (doc["kind"], doc["input"]) == (
        "audio",
        {"name": "samples", "dtype": "float32", "sample_rate": 16000},
    )
    assert load_signature(tmp_path) == SIG


def test_the_graph_takes_clips_of_samples() -> None:
    assert audio.row_shape(SIG, TensorInfo("samples", "float32", ("N", "T"))) == (-1,)
    with pytest.raises(ServableError, match=r"shape \['N'\]; an audio model takes \[N, T\]"):
        audio.row_shape(SIG, TensorInfo("samples", "float32", ("N",)))
    warm = audio.warm_up(SIG, (-1,))
    assert warm.shape == (1, 16000) and warm.dtype == np.float32 and not warm.any()
    assert audio.wire(SIG).datatype == "BYTES" and audio.wire(SIG).shape == (-1,)
    assert audio.OFF_LOOP


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [
        ("WAV", "PCM_16", 16000),
        ("WAV", "PCM_24", 44100),
        ("WAV", "FLOAT", 22050),
        ("WAV", "PCM_32", 16000),
        ("WAV", "ALAW", 8000),
        ("WAV", "ULAW", 8000),
        ("FLAC", "PCM_16", 48000),
        ("OGG", "VORBIS", 44100),
        ("OGG", "OPUS", 48000),
        ("MP3", "MPEG_LAYER_III", 44100),
    ],
)
def test_every_format_decodes_to_mono_float32_at_the_model_rate(
    fmt: str, subtype: str, rate: int
) -> None:
    data = encode(tone(2.0, rate, 440), rate, fmt, subtype)
    samples = audio.prepare(SIG, Example(image=data), LIMITS, (-1,))
    assert samples.dtype == np.float32 and samples.ndim == 1
    # Lossy codecs add a few ms of priming; the length is otherwise exactly 2 s at 16 kHz.
    assert abs(len(samples) - 32000) <= (0 if fmt in ("WAV", "FLAC") else 2000)
    assert peak_hz(samples, 16000) == pytest.approx(440, abs=2)
    assert np.abs(samples).max() == pytest.approx(0.5, abs=0.08)


def test_channels_are_averaged_into_one() -> None:
    left = tone(1.0, 16000, 440)
    right = tone(1.0, 16000, 1000, 0.25)
    stereo = encode(np.stack([left, right], axis=1), 16000, "WAV", "FLOAT")
    mono = audio.decode_clip(stereo, 16000, 60)
    assert np.allclose(mono, (left + right) / 2, atol=1e-6)
    cancelling = encode(np.stack([left, -left], axis=1), 16000, "WAV", "FLOAT")
    assert not audio.decode_clip(cancelling, 16000, 60).any()
    six = encode(np.tile(left[:, None], (1, 6)), 16000, "FLAC")
    assert np.allclose(audio.decode_clip(six, 16000, 60), left, atol=1e-4)


def test_resampling_keeps_the_pitch_and_the_duration() -> None:
    clip = encode(tone(3.0, 48000, 1000), 48000, "WAV", "PCM_16")
    samples = audio.decode_clip(clip, 16000, 60)
    assert len(samples) == 48000
    assert peak_hz(samples, 16000) == pytest.approx(1000, abs=1)
    assert len(audio.decode_clip(clip, 8000, 60)) == 24000


def test_a_clip_over_the_limit_is_refused_and_one_at_it_taken() -> None:
    at_limit = encode(tone(5.0, 16000), 16000)
    assert len(audio.prepare(SIG, Example(image=at_limit), LIMITS, (-1,))) == 80000
    over = encode(tone(5.01, 16000), 16000)
    with pytest.raises(InvalidInput, match=r"5\.0 s long .*over the limit of 5 s"):
        audio.prepare(SIG, Example(image=over), LIMITS, (-1,))


def test_the_limit_is_the_serve_flag(tmp_path: Path) -> None:
    def settings(*flags: str) -> float:
        args = build_parser().parse_args(["serve", "--model_base_path", str(tmp_path), *flags])
        return serve_settings(args).max_audio_seconds

    assert settings() == 60.0
    assert settings("--max_audio_seconds", "2.5") == 2.5
    with pytest.raises(ConfigError, match="--max_audio_seconds must be positive, got 0.0"):
        settings("--max_audio_seconds", "0")


def test_two_hours_are_refused_from_the_header_without_decoding() -> None:
    """Two hours of FLAC silence is 180 kB; decoded it would be 230 MB of float32."""
    bomb = long_silence_flac(2 * 3600)
    assert len(bomb) < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput) as info:
            audio.decode_clip(bomb, 16000, 60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "7,200.0 s long (FLAC PCM_16, 8,000 Hz, 1 channel)" in str(info.value)
    assert "over the limit of 60 s (--max_audio_seconds)" in str(info.value)
    assert peak < 2_000_000  # bytes: the header was read, not the samples


def test_a_wav_header_claiming_hours_is_read_for_the_data_it_holds() -> None:
    """libsndfile measures a WAV's data chunk against the file: a lie in it buys nothing."""
    rate, data = 16000, (tone(1.0, 16000) * 32767).astype("<i2").tobytes()
    claimed = 2 * 3600 * rate * 2
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + claimed)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", claimed)
    )
    assert len(audio.decode_clip(header + data, 16000, 60)) == rate


BROKEN = {
    "empty": (b"", r"the audio clip is empty \(0 bytes\)"),
    "text": (
        b"hello, I am not a clip",
        r"could not decode audio \(22 bytes, starts with b'hello, I am '\): libsndfile says "
        r"'Format not recognised'; expected WAV, FLAC, OGG Vorbis, Opus or MP3",
    ),
    "an MP4 (AAC) file": (
        b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + bytes(64),
        r"starts with b'\\x00\\x00\\x00 ftypM4A '.*Format not recognised",
    ),
    "a PNG": (b"\x89PNG\r\n\x1a\n" + bytes(100), "Format not recognised"),
    "a WAV header alone": (encode(tone(1.0, 16000), 16000)[:44], "holds no samples"),
    "a truncated FLAC": (
        encode(tone(3.0, 16000), 16000, "FLAC")[:3000],
        r"the audio clip \(FLAC PCM_16, 16,000 Hz, 1 channel\) is broken after 0 frames: "
        r"libsndfile says 'Error : flac decoder lost sync'",
    ),
    "one sample at 44.1 kHz": (
        encode(np.zeros(1), 44100),
        r"too short: 1 frame\(s\) \(WAV PCM_16, 44,100 Hz, 1 channel\) make no sample at 16,000",
    ),
    "NaN samples": (
        encode(np.full(100, np.nan), 16000, "WAV", "FLOAT"),
        "holds NaN or infinite samples",
    ),
    "a 500 Hz sample rate": (
        encode(np.zeros(500), 500),
        r"WAV PCM_16, 500 Hz, 1 channel\) has a sample rate outside 1,000–384,000 Hz",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_clips_are_invalid_and_say_what_was_found(case: str) -> None:
    data, problem = BROKEN[case]
    with pytest.raises(InvalidInput, match=problem):
        audio.prepare(SIG, Example(image=data), LIMITS, (-1,))


def test_batches_and_wrong_inputs() -> None:
    clips = [encode(tone(s, 16000), 16000) for s in (0.5, 1.0)]
    prepares = audio.prepare_batch(SIG, Batch(images=clips), LIMITS, (-1,))
    assert [len(p()) for p in prepares] == [8000, 16000]
    with pytest.raises(InvalidInput, match="encoded audio clips"):
        audio.prepare_batch(SIG, Batch(features=np.zeros((1, 2))), LIMITS, (-1,))
    with pytest.raises(InvalidInput, match="an audio clip in `input`, not features"):
        audio.prepare(SIG, Example(features={"a": 1.0}), LIMITS, (-1,))


@pytest.mark.parametrize("missing", ["soundfile", "soxr"])
def test_without_the_decoders_an_audio_model_says_what_to_install(missing: str) -> None:
    """In a process where the package cannot be imported, as in an install without it."""
    script = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "from pyserving.errors import MissingExtra\n"
        "from pyserving.kinds import audio\n"
        "try:\n"
        "    audio.decode_clip(b'RIFF', 16000, 60)\n"
        "except MissingExtra as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == (
        f"an audio model needs {missing}, which is not installed; install it with: "
        "pip install 'pyserving[audio]'"
    )
