"""The whole slice: a real server process, the real exported model, real photos over gRPC."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from pyserving._proto import classification_pb2 as pb
from pyserving._proto import classification_pb2_grpc as pb_grpc
from pyserving.client import Client
from pyserving.errors import RemoteError
from tests.conftest import encode
from tests.processes import run_cli
from tests.seed_client import seed_classify

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def client(server_address: str) -> Iterator[Client]:
    with Client(server_address) as c:
        yield c


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_chelsea_is_an_egyptian_cat(client: Client, chelsea: np.ndarray, fmt: str) -> None:
    result = client.classify(encode(chelsea, fmt))
    top = result.predictions
    assert len(top) == 5
    assert (top[0].name, top[0].index) == ("Egyptian cat", 285)
    assert all(p.index in CAT_CLASSES for p in top[:3])
    assert result.model_name == "imagenet" and result.model_version > 0


def test_coffee_is_espresso(client: Client, coffee_jpeg: bytes) -> None:
    top = client.classify(coffee_jpeg).predictions
    assert (top[0].name, top[0].index) == ("espresso", 967)


def test_scores_are_probabilities_best_first(client: Client, chelsea_jpeg: bytes) -> None:
    top = client.classify(chelsea_jpeg, top_k=1000).predictions
    scores = [p.score for p in top]
    assert len(top) == 1000
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(scores) == pytest.approx(1.0, abs=1e-3)


def test_top_k_and_explicit_model(client: Client, chelsea_jpeg: bytes) -> None:
    result = client.classify(chelsea_jpeg, model_name="imagenet", top_k=2)
    assert len(result.predictions) == 2
    pinned = client.classify(chelsea_jpeg, model_version=result.model_version, top_k=1)
    assert pinned.model_version == result.model_version


def test_client_from_the_original_definition(
    server_address: str, chelsea_jpeg: bytes, tmp_path: Path
) -> None:
    """A client compiled from the original 2016 proto, as it stands, gets the same classes."""
    (classes,) = seed_classify(server_address, [chelsea_jpeg], tmp_path)
    assert len(classes) == 5
    assert classes[0][0] == "Egyptian cat"
    assert classes[0][1] > classes[1][1] > 0


def _truncated_jpeg(chelsea: np.ndarray) -> bytes:
    data = encode(chelsea, "JPEG", quality=92)
    return data[: len(data) // 2]


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def _zero_size_png() -> bytes:
    data = bytearray(_png(1, 1))
    data[16:24] = b"\x00" * 8  # IHDR width and height (the CRC no longer matches either)
    return bytes(data)


def _bomb_png() -> bytes:
    """A 10000×6000 (60 MP) PNG of one colour: tiny on the wire, huge decoded."""
    buffer = io.BytesIO()
    Image.new("1", (10000, 6000)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


BAD_INPUTS = {
    "empty": lambda c: b"",
    "random bytes": lambda c: np.random.default_rng(1).bytes(5000),
    "text": lambda c: b"hello, I am not an image",
    "truncated jpeg": _truncated_jpeg,
    "0x0 image": lambda c: _zero_size_png(),
    "1x50000 image": lambda c: _png(1, 50000),
    "decompression bomb": lambda c: _bomb_png(),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_invalid_argument_and_server_keeps_serving(
    client: Client, chelsea: np.ndarray, chelsea_jpeg: bytes, case: str
) -> None:
    with pytest.raises(RemoteError) as info:
        client.classify(BAD_INPUTS[case](chelsea))
    assert info.value.grpc_code == "INVALID_ARGUMENT", str(info.value)
    assert str(info.value)  # says what was wrong
    assert client.classify(chelsea_jpeg).predictions[0].name == "Egyptian cat"


def test_bad_input_messages_say_what_was_wrong(client: Client, chelsea: np.ndarray) -> None:
    messages = {}
    for case in ("empty", "text", "decompression bomb", "1x50000 image"):
        with pytest.raises(RemoteError) as info:
            client.classify(BAD_INPUTS[case](chelsea))
        messages[case] = str(info.value)
    assert "empty" in messages["empty"]
    assert "expected JPEG, PNG, WebP, GIF or BMP" in messages["text"]
    assert "60,000,000 pixels" in messages["decompression bomb"]
    assert "1×50000" in messages["1x50000 image"]


def test_message_over_the_size_limit_is_resource_exhausted(
    client: Client, chelsea_jpeg: bytes
) -> None:
    with pytest.raises(RemoteError) as info:
        client.classify(b"\xff" * (21 * 1024 * 1024))
    assert info.value.grpc_code == "RESOURCE_EXHAUSTED"
    assert client.classify(chelsea_jpeg).predictions[0].index == 285


@pytest.mark.parametrize(
    ("model_name", "version"), [("no-such-model", 0), ("imagenet", 12345), ("", 7)]
)
def test_unknown_model_or_version_is_not_found(
    client: Client, chelsea_jpeg: bytes, model_name: str, version: int
) -> None:
    with pytest.raises(RemoteError) as info:
        client.classify(chelsea_jpeg, model_name=model_name, model_version=version)
    assert info.value.grpc_code == "NOT_FOUND"
    assert client.classify(chelsea_jpeg).predictions[0].index == 285


def test_raw_stub_sees_status_codes(server_address: str) -> None:
    """The status travels on the wire as gRPC status, not only inside our client."""
    with grpc.insecure_channel(server_address) as channel:
        stub = pb_grpc.ClassificationServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.classify(pb.ClassificationRequest(input=b"nope"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_classify_prints_top_5(
    server_address: str, tmp_path: Path, chelsea_jpeg: bytes
) -> None:
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(chelsea_jpeg)
    out = run_cli("classify", str(photo), "--server", server_address, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert "model imagenet" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 5
    assert rows[0][:3] == ["1", "Egyptian", "cat"]


def test_cli_reports_unreachable_server(tmp_path: Path, chelsea_jpeg: bytes) -> None:
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(chelsea_jpeg)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "classify",
            str(photo),
            "--server",
            "127.0.0.1:1",
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not reachable" in result.stderr or "UNAVAILABLE" in result.stderr


def test_cli_status_lists_versions(server_address: str) -> None:
    out = run_cli("status", "--server", server_address, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "imagenet"
    version, state, engine, precision = lines[1].split()
    assert int(version) > 0 and state == "AVAILABLE"
    assert engine in ("onnxruntime", "openvino") and precision in ("f32", "bf16")
