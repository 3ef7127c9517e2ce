"""The REST app in process (httpx over ASGI): its routes, their document, the error mapping."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from starlette.routing import Route

from pyserving.core.auth import Tokens
from pyserving.core.service import Service
from pyserving.rest_api import openapi, tfs
from pyserving.rest_api.app import create_rest_app

CATCH_ALL = "/v1/models/{rest:path}"  # TF Serving's paths, dispatched by `tfs`


def served(service: Service) -> dict[str, set[str]]:
    """Every path template the app serves, with its methods (HEAD is Starlette's own)."""
    app = create_rest_app(service, max_request_bytes=1024)
    paths: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == CATCH_ALL:
            for path, method in tfs.PATHS.items():
                paths.setdefault(path, set()).add(method)
        else:
            paths.setdefault(route.path, set()).update((route.methods or set()) - {"HEAD"})
    return paths


async def test_every_route_the_app_serves_is_in_the_openapi_document(service: Service) -> None:
    document = openapi.document(service.model_names())["paths"]
    documented = {path: {m.upper() for m in ops} for path, ops in document.items()}
    undocumented = {
        f"{method} {path}"
        for path, methods in served(service).items()
        if path != "/openapi.json"
        for method in methods - documented.get(path, set())
    }
    assert not undocumented


async def test_the_tf_serving_paths_are_the_ones_dispatched(rest: httpx.AsyncClient) -> None:
    for path, method in tfs.PATHS.items():
        concrete = path.replace("{name}", "lin").replace("{version}", "1")
        response = await rest.request(method, concrete, json={"instances": [[0, 1]]})
        assert "no such route" not in response.text, path
        wrong = "POST" if method == "GET" else "GET"
        assert (await rest.request(wrong, concrete)).status_code == 405, path
    assert re.search("no such route", (await rest.get("/v1/models/lin/oops")).text)


async def test_health_metrics_and_document(rest: httpx.AsyncClient, service: Service) -> None:
    assert (await rest.get("/v2/health/live")).json() == {"live": True}
    ready = await rest.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    metrics = await rest.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "pyserving_request_seconds" in metrics.text
    names = (await rest.get("/openapi.json")).json()["paths"]["/v2/models/{name}"]["get"]
    assert names["parameters"][0]["schema"]["enum"] == ["colours", "letters", "lin"]
    service.stop_taking_requests()
    not_ready = await rest.get("/v2/health/ready")
    assert not_ready.status_code == 503 and not_ready.json() == {"ready": False}


async def test_errors_leave_as_json_with_their_status(rest: httpx.AsyncClient) -> None:
    missing = await rest.get("/v2/models/nope")
    assert missing.status_code == 404 and "'nope'" in missing.json()["error"]
    unknown = await rest.get("/nowhere")
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}
    wrong = await rest.get("/v1/models/lin:classify")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"error": "use POST for this route"}
    too_large = await rest.post("/v2/models/lin/infer", content=b"x" * (64 * 1024 + 1))
    assert too_large.status_code == 413 and "limit" in too_large.json()["error"]


async def test_auth_metrics_closes_metrics_too(service: Service, tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("t0k3n\n")
    tokens = Tokens(tmp_path / "tokens")
    for metrics_open, status in ((True, 200), (False, 401)):
        app = create_rest_app(service, 1024, tokens=tokens, metrics_open=metrics_open)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/metrics")).status_code == status
            assert (await http.get("/v2/health/live")).status_code == 200
            bearer = {"Authorization": "Bearer t0k3n"}
            assert (await http.get("/metrics", headers=bearer)).status_code == 200
            assert (await http.get("/v2/models/colours", headers=bearer)).status_code == 200
