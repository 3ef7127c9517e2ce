"""The web app's request handlers: the page, the JSON API and the health check.

The routes and the JSON that `POST /api/classify` returns are described in `web.app`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from pyserving.errors import InvalidInput, PyservingError
from pyserving.web.model_server import FileResult, ModelServer
from pyserving.web.uploads import MAX_FILES, Form, Upload, format_mib, read_form

# The page without JavaScript shows previews inline; larger photos get none.
PREVIEW_MAX_BYTES = 2 * 1024 * 1024
_IMAGE_TYPES = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
    b"BM": "image/bmp",
}
_NO_STORE = {"Cache-Control": "no-store"}


class Endpoints:
    """The handlers, bound to one model server and one template environment.

    Called by Starlette on the event loop; they forward bytes and do no CPU-heavy work.
    """

    def __init__(
        self,
        model_server: ModelServer,
        templates: Environment,
        max_upload_bytes: int,
        models: Sequence[str],
        asset_version: str,
    ) -> None:
        self.model_server = model_server
        self._templates = templates
        self._max_upload_bytes = max_upload_bytes
        self._models = tuple(models)
        self._asset_version = asset_version

    async def page(self, request: Request) -> Response:
        """GET: the upload page. POST: the same page with the results (no JavaScript needed)."""
        if request.method != "POST":
            return self._render(banner=await self.model_server.check(seconds=1.0))
        try:
            form = await read_form(request, self._max_upload_bytes)
            model = self._model_of(form)
        except PyservingError as exc:
            return self._render(form_error=str(exc), status=exc.http_status)
        results = await self.model_server.classify_all(form.uploads, model)
        previews = await asyncio.gather(
            *(_preview(u, r) for u, r in zip(form.uploads, results, strict=True))
        )
        return self._render(
            results=list(zip(results, previews, strict=True)),
            banner=_banner(results, self.model_server),
            selected_model=model,
            status=overall_status(results),
        )

    async def classify(self, request: Request) -> Response:
        """POST /api/classify: multipart in, one JSON result per file out."""
        try:
            form = await read_form(request, self._max_upload_bytes)
            model = self._model_of(form)
        except PyservingError as exc:
            return JSONResponse({"error": str(exc)}, exc.http_status, _NO_STORE)
        results = await self.model_server.classify_all(form.uploads, model)
        return JSONResponse(
            {"results": [result_json(r) for r in results]}, overall_status(results), _NO_STORE
        )

    async def healthz(self, request: Request) -> Response:
        """200 when the model server answers, 503 with the reason when it does not."""
        reason = await self.model_server.check()
        body: dict[str, str] = {"server": self.model_server.address}
        if reason is None:
            return JSONResponse({"status": "ok", **body}, 200, _NO_STORE)
        return JSONResponse({"status": "unavailable", "reason": reason, **body}, 503, _NO_STORE)

    def _model_of(self, form: Form) -> str:
        if not self._models:
            return form.model
        if not form.model:
            return self._models[0]
        if form.model not in self._models:
            raise InvalidInput(
                f"unknown model {form.model!r}: choose one of {', '.join(self._models)}"
            )
        return form.model

    def _render(
        self,
        *,
        results: Sequence[tuple[FileResult, str]] = (),
        banner: str | None = None,
        form_error: str = "",
        selected_model: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        context: dict[str, Any] = {
            "server_address": self.model_server.address,
            "models": self._models,
            "selected_model": selected_model or (self._models[0] if self._models else ""),
            "max_upload_bytes": self._max_upload_bytes,
            "max_upload_text": format_mib(self._max_upload_bytes),
            "max_files": MAX_FILES,
            "asset_version": self._asset_version,
            "results": results,
            "summary": summary([r for r, _ in results]) if results else "",
            "banner": banner,
            "form_error": form_error,
        }
        html = self._templates.get_template("index.html").render(context)
        return HTMLResponse(html, status, _NO_STORE)


def overall_status(results: Sequence[FileResult]) -> int:
    """200 if any file has predictions; else the status all errors share, or 400."""
    if any(r.classification is not None for r in results):
        return 200
    statuses = {r.status for r in results}
    return statuses.pop() if len(statuses) == 1 else 400


def summary(results: Sequence[FileResult]) -> str:
    """One line on how an upload went, as app.js also writes it."""
    failed = sum(r.classification is None for r in results)
    done = len(results) - failed
    if not failed:
        return f"Classified {done} photo{'' if done == 1 else 's'}."
    if not done:
        if len(results) == 1:
            return "The photo could not be classified."
        return f"None of the {len(results)} photos could be classified."
    return f"Classified {done} of {len(results)} photos; {failed} could not be classified."


def result_json(result: FileResult) -> dict[str, Any]:
    """One file's entry in the API's `results` list."""
    c = result.classification
    if c is None:
        return {
            "filename": result.filename,
            "error": result.error,
            "status": result.status,
            "code": result.code,
            "detail": result.detail,
        }
    return {
        "filename": result.filename,
        "model_name": c.model_name,
        "model_version": c.model_version,
        "elapsed_ms": round(result.elapsed_ms, 1),
        "predictions": [
            {"name": p.name, "score": p.score, "index": p.index} for p in c.predictions
        ],
    }


def _banner(results: Sequence[FileResult], model_server: ModelServer) -> str | None:
    return model_server.unreachable_message() if any(r.server_down for r in results) else None


def image_type(data: bytes) -> str | None:
    """The MIME type of an encoded image we accept, from its first bytes; None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((t for magic, t in _IMAGE_TYPES.items() if data.startswith(magic)), None)


async def _preview(upload: Upload, result: FileResult) -> str:
    kind = image_type(upload.data)
    if result.classification is None or kind is None or len(upload.data) > PREVIEW_MAX_BYTES:
        return ""
    encoded = await asyncio.to_thread(base64.b64encode, upload.data)
    return f"data:{kind};base64,{encoded.decode('ascii')}"
