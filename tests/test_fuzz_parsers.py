"""Property tests for every decoder and file parser a request or a repository reaches.

The property: a domain error (InvalidInput, ServableError, ConfigError) or a good value,
never another exception. Example counts are bounded, and fixed in CI (`derandomize`), so a
CI run is repeatable; `FUZZ_EXAMPLES` scales the counts.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pyserving.core.model_config import read_model_config
from pyserving.errors import ConfigError, InvalidInput, ServableError
from pyserving.kinds import load_signature
from pyserving.kinds.audio import decode_clip
from pyserving.kinds.text import decode_text
from pyserving.preprocess import decode_image, feature_rows
from pyserving.signature import LABELS_FILE, SIGNATURE_FILE
from pyserving.tensors import array_of

SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))


def examples(n: int) -> settings:
    """Hypothesis settings: `n` examples (scaled), no deadline (the machine is shared), and
    in CI the same examples every run."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _wav() -> bytes:
    buffer = io.BytesIO()
    tone = np.sin(np.arange(8000) / 5).astype(np.float32)
    soundfile.write(buffer, tone, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _flac() -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(4000, np.float32), 8000, format="FLAC")
    return buffer.getvalue()


VALID = {"png": _png(), "jpeg": _jpeg(), "wav": _wav(), "flac": _flac()}


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with some bytes changed, a piece cut out or inserted, or cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[at:]
    return bytes(data)


def inputs(*valid: str) -> st.SearchStrategy[bytes]:
    """Random bytes, or a valid file of each named kind mutated."""
    return st.one_of(st.binary(max_size=2048), *(mutated(VALID[v]) for v in valid))


@examples(400)
@given(inputs("png", "jpeg"))
def test_image_decoder(data: bytes) -> None:
    try:
        array = decode_image(data, 8, 8, max_pixels=1_000_000)
    except InvalidInput:
        return
    assert array.shape == (8, 8, 3) and array.dtype == np.uint8


@examples(400)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=200).map(str.encode)))
def test_text_decoder(data: bytes) -> None:
    for whitespace in ("collapse", "keep"):
        try:
            text = decode_text(data, whitespace, max_chars=100)
        except InvalidInput:
            continue
        assert 0 < len(text) <= 100 and text.strip()


@examples(300)
@given(inputs("wav", "flac"))
def test_audio_decoder(data: bytes) -> None:
    try:
        samples = decode_clip(data, 16000, max_seconds=2.0)
    except InvalidInput:
        return
    assert samples.ndim == 1 and samples.dtype == np.float32
    assert len(samples) <= 2 * 16000 + 16000  # at most the limit (and a frame of slack)
    assert np.isfinite(samples).all()


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)


@examples(300)
@given(
    st.one_of(
        st.lists(st.lists(numbers, max_size=4), max_size=4),
        st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", ""]), numbers), max_size=4),
        numbers,
    )
)
def test_feature_rows(rows: Any) -> None:
    try:
        matrix = feature_rows(rows, ("a", "b"))
    except InvalidInput:
        return
    assert matrix.shape[1:] == (2,) and np.isfinite(matrix).all()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
GOOD_SIGNATURE = {
    "format": 1,
    "kind": "image",
    "input": {"name": "image", "dtype": "uint8", "layout": "NHWC", "height": 8, "width": 8},
    "output": {"name": "logits", "scores": "logits", "classes": 2},
    "top_k": 1,
}
SIGNATURE_KEYS = ["format", "kind", "input", "output", "top_k", "precision", "source"]
SECTION_KEYS = [
    "name", "dtype", "layout", "height", "width", "resize", "features", "whitespace",
    "sample_rate", "scores", "classes",
]  # fmt: skip


@st.composite
def signatures(draw: st.DrawFn) -> Any:
    """A good servable.json with fields replaced, removed or added, or any JSON value."""
    if draw(st.booleans()):
        return draw(json_values)
    doc = json.loads(json.dumps(GOOD_SIGNATURE))
    doc["kind"] = draw(st.sampled_from(["image", "features", "text", "audio", "video", 3]))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from([doc, doc.get("input"), doc.get("output")]))
        if not isinstance(where, dict):
            continue
        key = draw(st.sampled_from(SIGNATURE_KEYS + SECTION_KEYS))
        if draw(st.booleans()):
            where[key] = draw(json_values)
        else:
            where.pop(key, None)
    return doc


def _load(signature: bytes, labels: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / SIGNATURE_FILE).write_bytes(signature)
        (folder / LABELS_FILE).write_bytes(labels)
        try:
            loaded = load_signature(folder)
        except ServableError:
            return
        assert loaded.num_classes == len(loaded.labels) >= 1


@examples(400)
@given(signatures(), st.sampled_from([b"cat\ndog\n", b"cat\n", b""]))
def test_servable_json(doc: Any, labels: bytes) -> None:
    _load(json.dumps(doc).encode(), labels)


@examples(200)
@given(st.binary(max_size=256), st.binary(max_size=64))
def test_servable_files_as_bytes(signature: bytes, labels: bytes) -> None:
    _load(signature, labels)
    _load(json.dumps(GOOD_SIGNATURE).encode(), labels)


GOOD_CONFIG = """
default_model = "a"
[[models]]
name = "a"
base_path = "/models/a"
version_policy = { latest = 2 }
[models.batching]
max_batch_size = 4
"""


@examples(300)
@given(
    st.one_of(
        st.text(max_size=300),
        mutated(GOOD_CONFIG.encode()).map(lambda b: b.decode("utf-8", "replace")),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    )
)
def test_model_config_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.toml"
        path.write_text(text, encoding="utf-8")
        try:
            models, default = read_model_config(path)
        except ConfigError:
            return
        assert all(m.name for m in models)
        assert not models or default in {m.name for m in models}


@examples(400)
@given(
    json_values,
    st.sampled_from(
        ["FP32", "FP64", "FP16", "INT8", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "X"]
    ),
)
def test_tensor_json_data(values: Any, datatype: str) -> None:
    try:
        array = array_of(values, datatype, "input 'x'")
    except InvalidInput as exc:
        assert "input 'x'" in str(exc)
        return
    assert isinstance(array, np.ndarray)
