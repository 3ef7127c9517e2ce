"""The web app's request handlers: the page, the JSON API and the health check.

The routes and the JSON that `POST /api/classify` and `POST /api/explain` return are
described in `web.app`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from pyserving.client.formats import clip_type, image_type
from pyserving.errors import InvalidInput, PyservingError
from pyserving.results import Explanation, ExplanationPart
from pyserving.web.model_server import FileResult, ModelChoice, ModelServer
from pyserving.web.uploads import (
    CLIPS,
    FEATURES,
    IMAGES,
    MAX_FILES,
    MODEL_FIELD,
    TEXT,
    Upload,
    format_mib,
    read_form,
)

# The page without JavaScript shows previews inline; larger files get none.
PREVIEW_MAX_BYTES = 2 * 1024 * 1024
# What a card calls its input, by the field it came in.
NOUNS = {IMAGES: "photo", CLIPS: "clip", TEXT: "text", FEATURES: "input"}
_NO_STORE = {"Cache-Control": "no-store"}

# How a card shows its input: ("image" | "audio", a data: URL), ("quote", text),
# ("none", "") for "No preview", ("", "") for no media box at all.
Media = tuple[str, str]


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
        """GET: the page for a model (`?model=`). POST: the page with the results.

        Both work without JavaScript.
        """
        if request.method != "POST":
            asked = request.query_params.get(MODEL_FIELD, "")
            try:
                self._model_of(asked)
            except InvalidInput as exc:
                return await self._render(form_error=str(exc), status=exc.http_status, check=True)
            return await self._render(selected_model=asked, check=True)
        try:
            form = await read_form(request, self._max_upload_bytes)
            model, label = self._model_of(form.model)
        except PyservingError as exc:
            return await self._render(form_error=str(exc), status=exc.http_status)
        results = await self.model_server.classify_all(form.uploads, model, label)
        media = await asyncio.gather(
            *(_media(u, r) for u, r in zip(form.uploads, results, strict=True))
        )
        return await self._render(
            results=list(zip(results, media, strict=True)),
            banner=_banner(results, self.model_server),
            selected_model=f"{model}/{label}" if label else model,
            status=overall_status(results),
        )

    async def classify(self, request: Request) -> Response:
        """POST /api/classify: multipart in, one JSON result per input out."""
        try:
            form = await read_form(request, self._max_upload_bytes)
            model, label = self._model_of(form.model)
        except PyservingError as exc:
            return JSONResponse({"error": str(exc)}, exc.http_status, _NO_STORE)
        results = await self.model_server.classify_all(form.uploads, model, label)
        return JSONResponse(
            {"results": [result_json(r) for r in results]}, overall_status(results), _NO_STORE
        )

    async def explain(self, request: Request) -> Response:
        """POST /api/explain: the classify form (and `class`) in, one explanation per input out."""
        try:
            form = await read_form(request, self._max_upload_bytes)
            model, label = self._model_of(form.model)
        except PyservingError as exc:
            return JSONResponse({"error": str(exc)}, exc.http_status, _NO_STORE)
        results = await self.model_server.explain_all(form.uploads, model, label, form.class_name)
        return JSONResponse(
            {"results": [result_json(r) for r in results]}, overall_status(results), _NO_STORE
        )

    async def models(self, request: Request) -> Response:
        """GET /api/models: the models offered and what each takes (kind "" when unknown)."""
        choices = await self.model_server.choices(self._models, seconds=2.0)
        body = [
            {"name": c.name, "kind": c.kind, "features": list(c.features)}
            | ({"label": c.label, "version": c.version} if c.label else {})
            for c in choices
        ]
        return JSONResponse({"models": body}, 200, _NO_STORE)

    async def healthz(self, request: Request) -> Response:
        """200 when the model server answers, 503 with the reason when it does not."""
        reason = await self.model_server.check()
        body: dict[str, str] = {"server": self.model_server.address}
        if reason is None:
            return JSONResponse({"status": "ok", **body}, 200, _NO_STORE)
        return JSONResponse({"status": "unavailable", "reason": reason, **body}, 503, _NO_STORE)

    def _model_of(self, value: str) -> tuple[str, str]:
        """The model and version label a picker's value names: `name` or `name/label`."""
        if not self._models:
            return value, ""
        if not value:
            return self._models[0], ""
        name, _, label = (value, "", "") if value in self._models else value.partition("/")
        if name not in self._models:
            raise InvalidInput(f"unknown model {value!r}: choose one of {', '.join(self._models)}")
        return name, label

    async def _render(
        self,
        *,
        results: Sequence[tuple[FileResult, Media]] = (),
        banner: str | None = None,
        form_error: str = "",
        selected_model: str = "",
        status: int = 200,
        check: bool = False,
    ) -> HTMLResponse:
        if check:
            banner, choices = await asyncio.gather(
                self.model_server.check(seconds=1.0), self.model_server.choices(self._models, 1.0)
            )
        else:
            choices = await self.model_server.choices(self._models, seconds=1.0)
        selected = _selected(choices, selected_model)
        context: dict[str, Any] = {
            "server_address": self.model_server.address,
            "choices": choices if self._models else (),
            "selected": selected,
            "panel": _panel(selected),
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


def _selected(choices: Sequence[ModelChoice], name: str) -> ModelChoice:
    # A name the page asked for, else the first model it can classify with.
    chosen = [c for c in choices if c.value == name] or [c for c in choices if c.classifies]
    return (chosen or list(choices))[0]


def _panel(choice: ModelChoice) -> str:
    """Which input the page shows for a model: image, audio, text, features or tensor."""
    return choice.kind if choice.kind in ("audio", "text", "features", "tensor") else "image"


def overall_status(results: Sequence[FileResult]) -> int:
    """200 if any file was answered; else the status all errors share, or 400."""
    if any(r.answered for r in results):
        return 200
    statuses = {r.status for r in results}
    return statuses.pop() if len(statuses) == 1 else 400


def summary(results: Sequence[FileResult]) -> str:
    """One line on how an upload went, as app.js also writes it."""
    nouns = {NOUNS.get(r.source, "input") for r in results}
    noun = nouns.pop() if len(nouns) == 1 else "input"
    failed = sum(r.classification is None for r in results)
    done = len(results) - failed
    if not failed:
        return f"Classified {_plural(done, noun)}."
    if not done:
        if len(results) == 1:
            return f"The {noun} could not be classified."
        return f"None of the {len(results)} {noun}s could be classified."
    return f"Classified {done} of {len(results)} {noun}s; {failed} could not be classified."


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def result_json(result: FileResult) -> dict[str, Any]:
    """One file's entry in the API's `results` list.

    A text's `filename` is its start as it is; the page shows it in quotes.
    """
    c = result.classification
    filename = result.filename
    if result.source == TEXT:
        filename = filename.removeprefix("“").removesuffix("”")
    if result.explanation is not None:
        return {"filename": filename, "elapsed_ms": round(result.elapsed_ms, 1)} | explanation_json(
            result.explanation
        )
    if c is None:
        return {
            "filename": filename,
            "error": result.error,
            "status": result.status,
            "code": result.code,
            "detail": result.detail,
        }
    return {
        "filename": filename,
        "model_name": c.model_name,
        "model_version": c.model_version,
        "elapsed_ms": round(result.elapsed_ms, 1),
        "predictions": [
            {"name": p.name, "score": p.score, "index": p.index} for p in c.predictions
        ],
    }


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """An explanation as the API gives it: the class explained and a weight per part.

    A part carries only what its kind gives it: `row` and `column` (image), `word` (text),
    `start` and `end` in seconds (audio), `name` (features).
    """
    e = explanation
    rows, columns = e.grid
    return {
        "model_name": e.model_name,
        "model_version": e.model_version,
        "kind": e.kind,
        "method": e.method,
        "explained": {
            "name": e.explained.name,
            "score": e.explained.score,
            "index": e.explained.index,
        },
        "parts": [_part_json(e.kind, p) for p in e.parts],
    } | ({"grid": {"rows": rows, "columns": columns}} if e.kind == "image" else {})


def _part_json(kind: str, part: ExplanationPart) -> dict[str, Any]:
    if kind == "image":
        return {"row": part.row, "column": part.column, "weight": part.weight}
    if kind == "text":
        return {"word": part.name, "weight": part.weight}
    if kind == "audio":
        return {"start": part.start, "end": part.end, "weight": part.weight}
    return {"name": part.name, "weight": part.weight}


def _banner(results: Sequence[FileResult], model_server: ModelServer) -> str | None:
    return model_server.unreachable_message() if any(r.server_down for r in results) else None


async def _media(upload: Upload, result: FileResult) -> Media:
    if upload.source == TEXT:
        # The title shows a short text whole; a longer one is quoted in full above it.
        shortened = upload.filename.endswith("…”")
        return ("quote", upload.data.decode("utf-8", "replace")) if shortened else ("", "")
    if upload.source == FEATURES:
        return "quote", " · ".join(f"{k} = {v:g}" for k, v in upload.features.items())
    kind = image_type(upload.data) if upload.source == IMAGES else clip_type(upload.data)
    if result.classification is None or kind is None or len(upload.data) > PREVIEW_MAX_BYTES:
        return "none", ""
    encoded = await asyncio.to_thread(base64.b64encode, upload.data)
    return kind.partition("/")[0], f"data:{kind};base64,{encoded.decode('ascii')}"
