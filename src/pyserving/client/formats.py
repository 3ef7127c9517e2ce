"""What a file holds, told by its first bytes (never its name): images, audio clips, text.

Plain bytes in, plain values out, so the client side (the web app, the CLI) can sort files
without numpy or Pillow.
"""

from __future__ import annotations

IMAGE_FORMATS = "JPEG, PNG, WebP, GIF or BMP"
CLIP_FORMATS = "WAV, FLAC, OGG (Vorbis or Opus) or MP3"
_IMAGE_TYPES = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
    b"BM": "image/bmp",
}
HEAD_BYTES = 16  # enough for every check here


def image_type(data: bytes) -> str | None:
    """The MIME type of an encoded image we accept, from its first bytes; None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), None)


def clip_type(data: bytes) -> str | None:
    """The MIME type of an audio clip the server decodes, from its first bytes; else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith(b"ID3") or _mpeg_frame(data):
        return "audio/mpeg"
    return None


def is_text(data: bytes) -> bool:
    """Whether `data` is a text a text model takes: UTF-8, not blank, no NUL bytes."""
    if b"\x00" in data or image_type(data) or clip_type(data):
        return False
    try:
        return bool(data.decode("utf-8").strip())
    except UnicodeDecodeError:
        return False


def _mpeg_frame(data: bytes) -> bool:
    # An MPEG audio frame header: 11 sync bits, then a version, layer and bitrate that
    # are not the reserved values (ADTS AAC has layer 0 and is not MP3).
    if len(data) < 3 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version, layer, bitrate = (data[1] >> 3) & 3, (data[1] >> 1) & 3, data[2] >> 4
    return version != 1 and layer != 0 and bitrate != 15
