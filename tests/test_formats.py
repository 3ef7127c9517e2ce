"""formats: what a file holds, from its bytes (image_type and clip_type: test_web_app.py)."""

from __future__ import annotations

import pytest

from pyserving.client.formats import is_text
from tests.onnx_models import png


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"hello world\n", True),
        ("naïve café, 日本語".encode(), True),
        (b"   \n\t", False),  # blank
        (b"", False),
        ("caf\xe9".encode("latin-1"), False),  # not UTF-8
        ("hi".encode("utf-16"), False),  # NUL bytes
        (b"ID3 looks like text", False),  # an MP3's tag
        (png((1, 2, 3)), False),
    ],
)
def test_is_text(data: bytes, text: bool) -> None:
    assert is_text(data) is text
