"""The web app: photos, audio clips, texts or features in; their top classes out.

A separate process, a gRPC client only. The page shows the input the chosen model takes
(its kind, from the server's model status): a drop zone for photos, one for audio clips
with a Record button where the browser allows recording, a text box, or a field per
feature. A `tensor` model is listed but cannot be picked: it answers predict, not classify.

Routes:

    GET  /               the page (`?model=NAME` picks the model, for browsers without JS)
    POST /               the same page with the results rendered on the server (no JavaScript)
    POST /api/classify   multipart in, JSON out (what the page's JavaScript uses)
    POST /api/explain    the same form (and `class`) in, one explanation per input out
    GET  /api/models     the models offered and what each takes
    GET  /healthz        200 when the model server answers, 503 with the reason when not
    GET  /static/...     CSS, JavaScript, icon

Both POSTs take `multipart/form-data` with the inputs and, optionally, the model's name in
`model`: files in `images` (photos) or `clips` (WAV, FLAC, OGG or MP3 audio), texts in
`text` (one per field, UTF-8), or one number per feature in `feature.NAME` (together, one
input). Clips are checked by their first bytes before they are sent. The inputs are
classified concurrently.

`POST /api/classify` answers with one entry per input, in form order, each holding
either predictions (best first) or an error (`filename` is the file's name, the start of a
text in quotes, or `Features`):

    {"results": [
        {"filename": "cat.jpg", "model_name": "imagenet", "model_version": 1732460000,
         "elapsed_ms": 21.4,
         "predictions": [{"name": "Egyptian cat", "score": 0.61, "index": 285}, ...]},
        {"filename": "notes.txt", "status": 400, "code": "INVALID_ARGUMENT",
         "error": "notes.txt is not an image we can read (expected JPEG, PNG, WebP, GIF or BMP)",
         "detail": "could not decode image (12 bytes, starts with b'hello wo'): ..."}
    ]}

Its status is 200 when at least one input has predictions. When every input failed, it is
the status their errors share (400 for unreadable files, 503 when the model server is not
reachable) or 400 when they differ. An upload that cannot be taken at all gets
`{"error": "..."}` with 400 (not multipart, nothing to classify, too many inputs, a feature
that is not a number, unknown model) or 413 (over the upload limit; refused from
Content-Length before reading, or while reading).

`POST /api/explain` takes the same form, and optionally the class to explain in `class`
(its name; the top class when absent). It answers like `/api/classify`, each entry holding
an explanation instead of predictions: the class explained with its score on the whole
input, how the parts were hidden (`method`), and a weight per part, in the input's order:
how much hiding that part lowered the class's probability (negative: hiding it raised
it). An image's parts are the cells of `grid`, row by row; a text's are its words; a
clip's its windows, with their times; a features input's its features:

    {"results": [
        {"filename": "cat.jpg", "elapsed_ms": 412.0, "model_name": "imagenet",
         "model_version": 1732460000, "kind": "image", "method": "...",
         "explained": {"name": "Egyptian cat", "score": 0.61, "index": 285},
         "grid": {"rows": 7, "columns": 7},
         "parts": [{"row": 0, "column": 0, "weight": 0.002}, ...]},
        {"filename": "Wo ist ...", ..., "kind": "text",
         "parts": [{"word": "Wo", "weight": 0.08}, ...]}
    ]}

Audio parts are `{"start": 0.0, "end": 0.5, "weight": ...}` (seconds); features parts
`{"name": "petal length", "weight": ...}`. A tensor model has no explanations: its
entry is an error (`FAILED_PRECONDITION`, 400 for that input).

`GET /api/models` answers `{"models": [{"name": "lang", "kind": "text", "features": []}]}`
(the server's default model when none were configured; `kind` is "" while the server
cannot say).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import FrameType

import uvicorn
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyserving.client import ClientTLS
from pyserving.units import MiB
from pyserving.web.endpoints import Endpoints
from pyserving.web.model_server import ModelServer
from pyserving.web.uploads import format_mib

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
DEFAULT_MAX_UPLOAD_BYTES = 20 * MiB
SECURITY_HEADERS = {
    # Scripts only from our own files: even a label that slipped past escaping cannot run.
    # Previews and recordings play from blob: and data: URLs.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: data:; "
        "object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    server_address: str,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    models: Sequence[str] = (),
    tls: ClientTLS | None = None,
    auth_token: str | None = None,
) -> Starlette:
    """The web app for the model server at `server_address` (`host:port`).

    `models`: the model names to offer in a picker (shown when there are two or more; the
    first is the default). Empty: the server's default model. Connects on first use.
    """
    if max_upload_bytes <= 0:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    model_server = ModelServer(server_address, tls=tls, auth_token=auth_token)
    endpoints = Endpoints(model_server, _templates(), max_upload_bytes, models, _asset_version())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await model_server.close()

    routes = [
        Route("/", endpoints.page, methods=["GET", "POST"]),
        Route("/api/classify", endpoints.classify, methods=["POST"]),
        Route("/api/explain", endpoints.explain, methods=["POST"]),
        Route("/api/models", endpoints.models, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return Starlette(
        routes=routes, middleware=[Middleware(with_security_headers)], lifespan=lifespan
    )


def with_security_headers(app: ASGIApp) -> ASGIApp:
    """Wrap `app` so that every HTTP response carries SECURITY_HEADERS."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        if scope["type"] != "http":
            await app(scope, receive, send)
        else:
            await app(scope, receive, send_with_headers)

    return wrapped


def run(
    server: str,
    host: str,
    port: int,
    max_upload_bytes: int,
    models: Sequence[str] = (),
    tls: ClientTLS | None = None,
    auth_token: str | None = None,
) -> int:
    """Serve the web app on `host:port` (0: any free port) until SIGINT or SIGTERM."""
    app = create_app(server, max_upload_bytes, models, tls, auth_token)
    sock = _listen(host, port)
    config = uvicorn.Config(
        app,
        loop="asyncio",
        log_config=None,  # the CLI configured logging
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uv = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "web app listening on http://%s:%d (model server %s, uploads up to %s)",
        shown,
        sock.getsockname()[1],
        server,
        format_mib(max_upload_bytes),
    )
    with _stop_on_signals(uv):
        uv.run(sockets=[sock])
    log.info("stopped")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    # Bound and listening here, so the port we log is the real one even for port 0, and a
    # client connecting right after the log line waits in the backlog instead of failing.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc}") from None
    return sock


@contextlib.contextmanager
def _stop_on_signals(uv: uvicorn.Server) -> Iterator[None]:
    # uvicorn installs its own handlers while it serves and, after its graceful shutdown,
    # raises the signal again for the handler it found; this one turns that into exit code 0.
    def stop(sig: int, frame: FrameType | None) -> None:
        uv.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _asset_version() -> str:
    # Part of the static URLs, so browsers fetch new CSS and JS after an upgrade.
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
