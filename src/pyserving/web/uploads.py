"""Read what an upload form carries (photos, audio clips, a text or features), within limits.

Files are told apart by their first bytes, never by their name or declared type.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from pyserving.client.formats import CLIP_FORMATS, clip_type, image_type
from pyserving.errors import InvalidInput, RequestTooLarge
from pyserving.units import MiB

# The form's fields, and the `source` of each input.
IMAGES = "images"
CLIPS = "clips"
TEXT = "text"
FEATURES = "features"
FEATURE_PREFIX = "feature."  # one field per feature: feature.NAME=VALUE
MODEL_FIELD = "model"
CLASS_FIELD = "class"  # explain: the class to explain ("" or absent: the top one)
MAX_FILES = 50
MAX_FIELDS = 1000
TITLE_CHARS = 60
# Containers people record or download that the server's decoder (libsndfile) cannot read.
_OTHER_AUDIO = {
    b"\x1aE\xdf\xa3": "WebM or Matroska",
}


@dataclass(frozen=True)
class Upload:
    """One input to classify: a photo or a clip, a typed text, or one set of named features.

    `filename` is what people know it by (the file's name, the start of the text);
    `data` the encoded file or the text as UTF-8; `source` the field it came in.
    """

    filename: str
    data: bytes = b""
    source: str = IMAGES
    features: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Form:
    """What an upload form carries: the inputs in form order, the model ("" when none) and,
    for an explanation, the class to explain ("" when none)."""

    uploads: tuple[Upload, ...]
    model: str
    class_name: str = ""


def format_mib(n: int) -> str:
    """`20 MiB`, `1.5 MiB`, `300 KiB`: sizes as people read them."""
    if n < MiB:
        return f"{max(n / 1024, 0.1):.3g} KiB"
    return f"{n / MiB:.1f}".removesuffix(".0") + " MiB"


async def read_form(request: Request, max_bytes: int) -> Form:
    """Parse an upload form of up to `max_bytes` bytes in all.

    Fields: `images` and `clips` (files), `text` (one text each), `feature.NAME` (a number
    each; together one input), `model` and `class`; a urlencoded body can carry all but
    the files.
    Raises RequestTooLarge before reading when Content-Length is over the limit, and while
    reading when the body turns out longer than it said (or said nothing). Raises
    InvalidInput for a body that is not a form, holds nothing to classify or too much, or
    a feature that is not a number.
    """
    content_type = request.headers.get("content-type", "").partition(";")[0].strip()
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise InvalidInput(
            f"send the inputs as multipart/form-data: photos in the field {IMAGES!r}, "
            f"audio clips in {CLIPS!r}, a text in {TEXT!r}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(_too_large(max_bytes, int(declared)))
    try:
        async with aclosing(_limited(request, max_bytes)) as stream:
            parser: MultiPartParser | FormParser
            if content_type == "multipart/form-data":
                parser = MultiPartParser(
                    request.headers,
                    stream,
                    max_files=MAX_FILES,
                    max_fields=MAX_FIELDS,
                    max_part_size=max_bytes,  # a long text is one part
                )
            else:  # texts and features only, as `curl -d text=...` sends them
                parser = FormParser(request.headers, stream)
            form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"the upload could not be read: {exc.message}") from None
    try:
        uploads = await _inputs(form)
    finally:
        await form.close()
    if not uploads:
        raise InvalidInput("nothing to classify: choose photos or audio clips, or type a text")
    if len(uploads) > MAX_FILES:
        raise InvalidInput(f"too many inputs ({len(uploads)}): send at most {MAX_FILES} at a time")
    model = form.get(MODEL_FIELD)
    class_name = form.get(CLASS_FIELD)
    return Form(
        tuple(uploads),
        model if isinstance(model, str) else "",
        class_name if isinstance(class_name, str) else "",
    )


async def _inputs(form: FormData) -> list[Upload]:
    uploads: list[Upload] = []
    features: dict[str, float] = {}
    for name, value in form.multi_items():
        if name in (IMAGES, CLIPS) and isinstance(value, UploadFile):
            data = await value.read()
            if not value.filename and not data:
                continue  # the browser sends an empty part when no file was chosen
            default = f"{'photo' if name == IMAGES else 'clip'} {len(uploads) + 1}"
            uploads.append(Upload(_base_name(value.filename, default), data, name))
        elif name == TEXT:
            # A form field's line breaks arrive as CRLF whatever was typed (the HTML rule
            # for submitting forms); a file part's bytes are taken as they are.
            if isinstance(value, UploadFile):
                data = await value.read()
            else:
                data = value.replace("\r\n", "\n").encode("utf-8")
            if data.strip():  # bytes, not text: invalid UTF-8 is the server's to refuse
                uploads.append(Upload(text_title(data), data, TEXT))
        elif name.startswith(FEATURE_PREFIX) and isinstance(value, str):
            features[name.removeprefix(FEATURE_PREFIX)] = _number(name, value)
    if features:
        uploads.append(Upload("Features", source=FEATURES, features=features))
    return uploads


def text_title(data: bytes) -> str:
    """A text as a card's title: its start, on one line, in quotes."""
    text = re.sub(r"\s+", " ", data.decode("utf-8", "replace")).strip()
    if len(text) > TITLE_CHARS:
        text = text[: TITLE_CHARS - 1].rstrip() + "…"
    return f"“{text}”"


def clip_refusal(upload: Upload) -> tuple[str, str] | None:
    """For a clip the server could not decode: what to tell people, and the detail; else None."""
    if clip_type(upload.data) is not None:
        return None
    error = f"{upload.filename} is not an audio clip we can read (expected {CLIP_FORMATS})"
    found = next((t for magic, t in _OTHER_AUDIO.items() if upload.data.startswith(magic)), "")
    if upload.data[4:8] == b"ftyp":
        found = "MP4 or M4A"
    elif upload.data[:4] == b"FORM" and upload.data[8:12] in (b"AIFF", b"AIFC"):
        found = "AIFF"
    elif image_type(upload.data):
        found = "an image"
    what = f"{found} file, " if found else ""
    return error, f"{what}{len(upload.data)} bytes, starts with {upload.data[:8]!r}"


def _number(name: str, value: str) -> float:
    feature = name.removeprefix(FEATURE_PREFIX)
    if not value.strip():
        raise InvalidInput(f"give a value for every feature: {feature!r} is empty")
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"feature {feature!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"feature {feature!r} must be a finite number, got {value!r}")
    return number


async def _limited(request: Request, max_bytes: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_bytes:
            raise RequestTooLarge(_too_large(max_bytes))
        yield chunk


def _too_large(max_bytes: int, size: int | None = None) -> str:
    size_text = f" ({format_mib(size)})" if size else ""
    return (
        f"the upload{size_text} is over the limit of {format_mib(max_bytes)}: "
        "choose fewer or smaller files"
    )


def _base_name(filename: str | None, default: str) -> str:
    # Some browsers send the whole client-side path; people only know the file by its name.
    name = PureWindowsPath(PurePosixPath(filename or "").name).name.strip()
    return name or default
