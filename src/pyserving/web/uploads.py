"""Read the photos of a multipart upload, refusing it early when it is over the size limit."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from pyserving.errors import InvalidInput, RequestTooLarge
from pyserving.settings import MiB

FILES_FIELD = "images"
MODEL_FIELD = "model"
MAX_FILES = 50


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the browser gave it and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Form:
    """What an upload form carries: the photos, and the model chosen ("" when none)."""

    uploads: tuple[Upload, ...]
    model: str


def format_mib(n: int) -> str:
    """`20 MiB`, `1.5 MiB`, `300 KiB`: sizes as people read them."""
    if n < MiB:
        return f"{max(n / 1024, 0.1):.3g} KiB"
    return f"{n / MiB:.1f}".removesuffix(".0") + " MiB"


async def read_form(request: Request, max_bytes: int) -> Form:
    """Parse a multipart upload of up to `max_bytes` bytes in all.

    Raises RequestTooLarge before reading when Content-Length is over the limit, and while
    reading when the body turns out longer than it said (or said nothing). Raises
    InvalidInput for a body that is not multipart, holds no file, or too many.
    """
    if request.headers.get("content-type", "").partition(";")[0].strip() != "multipart/form-data":
        raise InvalidInput(f"send the photos as multipart/form-data, in the field {FILES_FIELD!r}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise RequestTooLarge(_too_large(max_bytes, int(declared)))
    try:
        async with aclosing(_limited(request, max_bytes)) as stream:
            parser = MultiPartParser(
                request.headers, stream, max_files=MAX_FILES, max_fields=10, max_part_size=64 * 1024
            )
            form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(f"the upload could not be read: {exc.message}") from None
    try:
        uploads: list[Upload] = []
        for field in form.getlist(FILES_FIELD):
            if not isinstance(field, UploadFile):
                continue
            data = await field.read()
            if not field.filename and not data:
                continue  # the browser sends an empty part when no file was chosen
            uploads.append(Upload(_base_name(field.filename, len(uploads) + 1), data))
    finally:
        await form.close()
    if not uploads:
        raise InvalidInput("choose one or more photos to classify")
    model = form.get(MODEL_FIELD)
    return Form(tuple(uploads), model if isinstance(model, str) else "")


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
        "choose fewer or smaller photos"
    )


def _base_name(filename: str | None, number: int) -> str:
    # Some browsers send the whole client-side path; people only know the file by its name.
    name = PureWindowsPath(PurePosixPath(filename or "").name).name.strip()
    return name or f"photo {number}"
