"""Audio clips for the tests: encoded in memory with soundfile, or made by espeak-ng and sox.

espeak-ng and sox are Debian packages `make test` installs (`make audio-tools`); a test
that needs them fails, saying so, when they are missing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def tone(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A sine wave, float64 [T]."""
    t = np.arange(round(seconds * rate)) / rate
    return np.asarray(amplitude * np.sin(2 * np.pi * hz * t))


def encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """`samples` ([T] or [T, channels]) as an audio file in memory."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def long_silence_flac(seconds: float, rate: int = 8000) -> bytes:
    """`seconds` of silence as FLAC: about 25 bytes a second, so hours fit in a request."""
    buffer = io.BytesIO()
    block = np.zeros(60 * rate, dtype=np.int16)
    with sf.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)
    return buffer.getvalue()


def tool(name: str) -> str:
    """The path of espeak-ng or sox; fails the test, saying how to install, if missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"this test needs {name}: make audio-tools (apt-get install espeak-ng sox)")
    return path


def espeak(text: str, voice: str, path: Path) -> Path:
    """`text` spoken by espeak-ng's `voice`, as a WAV file at `path` (22,050 Hz, 16-bit)."""
    subprocess.run(
        [tool("espeak-ng"), "-v", voice, "-w", str(path), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def sox(path: Path, *effect: str, rate: int = 16000, channels: int = 1) -> Path:
    """A clip sox makes from nothing (`sox -n ... synth ...`), in the format `path` names."""
    subprocess.run(
        [tool("sox"), "-n", "-r", str(rate), "-c", str(channels), str(path), *effect],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path
