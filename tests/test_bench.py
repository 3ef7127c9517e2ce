"""The benchmark runs end to end with tiny counts: every row is there and nothing failed.

A smoke test only: it checks the tables, not the timings. Beside it, the parts that decide
what counts as an error or a skipped row, checked on their own.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch

from bench import engines, load
from bench.engines import EnginePair, parse_pairs, skip_reason
from bench.images import chelsea_jpeg
from bench.int8 import NOT_GIVEN, start_int8
from bench.keys import CHELSEA, PLAIN_OPENVINO
from bench.processes import PLAIN_APP_READY, plain_app, running
from bench.run import PLAIN_APPS, PLAIN_PATH, main
from bench.stats import Measurement
from bench.targets import Check, evaluate
from pyserving.export import export_torch
from pyserving.export.quantize import QuantizeOptions
from pyserving.signature import list_versions
from tests.photos import write_folder

BEST = " (best)"
IMAGES = ("640×480", "4000×3000")
RIVALS = ("plain FastAPI + OpenVINO app", "plain FastAPI + ONNX Runtime app", "server, REST")
INT8_ROW = "server, REST, int8 version"
CHELSEA_TOP1 = {"Egyptian cat", "tabby", "tiger cat"}
COLUMNS = "| workload | input | concurrency | requests | {} | rounds' range | p50 ms | p99 ms |"
# The default --engines, as the rows name them; each is measured or skipped with its reason.
ENGINE_PAIRS = ("onnxruntime f32", "openvino f32", "auto auto")


@pytest.fixture(scope="module")
def int8_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny image classifier quantised to int8: its server checked its reference set."""
    folder = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()
    quantize = QuantizeOptions(write_folder(folder / "photos", 20), limit=16, min_agreement=0)
    export_torch(
        model, folder / "models", "imagenet", labels="a,b,c,d", input_size=32, quantize=quantize
    )
    (version,) = list_versions(folder / "models" / "imagenet")
    return folder / "models" / "imagenet" / str(version)


def test_quick_benchmark_fills_every_row_without_errors(
    imagenet_repository: Path,
    int8_version: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "results.md"
    argv = ["--quick", "--repository", str(imagenet_repository), "--output", str(output)]
    code = main([*argv, "--int8-version", str(int8_version)])
    text = output.read_text()
    assert code == 0, text
    assert text.strip() == capsys.readouterr().out.strip()
    assert COLUMNS.format("img/s") in text and "| server / in-process |" in text
    assert COLUMNS.format("req/s") in text and "| vs. empty call |" in text
    assert "| vs. gRPC |" in text and "| vs. OpenVINO app |" in text

    lines = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    header = lines[0]
    rows = {(c[0].removesuffix(BEST), c[1], c[2]): c for c in lines if c[2].isdigit()}
    engine_rows = {key: rows.pop(key) for key in list(rows) if ", engine " in key[0]}
    expected = [
        *(("in-process", size, c) for size in (*IMAGES, CHELSEA) for c in ("1", "2")),
        *(("in-process, full-size decode", "4000×3000", c) for c in ("1", "2")),
        *(("server", size, c) for size in IMAGES for c in ("1", "4")),
        ("server", "1920×1080", "4"),
        *(("server, REST", "640×480", c) for c in ("1", "4")),
        *((rival, CHELSEA, c) for rival in RIVALS for c in ("1", "4")),
        *((rival, "1920×1080", "4") for rival in RIVALS),
        (INT8_ROW, CHELSEA, "4"),
        *(("server, tiny model", "4 features", c) for c in ("1", "4")),
        *(("grpc.aio empty call", "0 bytes", c) for c in ("1", "4")),
    ]
    expected.append(("server, queue bound 1 batch", "640×480", "64"))
    assert sorted(rows) == sorted(expected), text
    overload = rows.pop(("server, queue bound 1 batch", "640×480", "64"))
    assert overload[-1] == "0", f"errors other than RESOURCE_EXHAUSTED under overload:\n{text}"

    # Each pair has its rows, or a line saying why this machine skipped them.
    skipped = [line.removeprefix("- skipped: ") for line in text.splitlines()]
    for pair in ENGINE_PAIRS:
        served = f"server, engine {pair}"
        assert (served, "640×480", "4") in engine_rows or any(
            line.startswith(f"{served}: ") for line in skipped
        ), f"no row and no reason for {served}:\n{text}"
        if pair != "auto auto":  # in process, auto runs as what its server chose
            local = f"in-process, engine {pair}"
            assert any(key[:2] == (local, "640×480") for key in engine_rows) or any(
                line.startswith(f"{local}: ") for line in skipped
            ), f"no row and no reason for {local}:\n{text}"
    for key, row in {**rows, **engine_rows}.items():
        cell = dict(zip(header, row, strict=True))
        assert cell["errors"] == "0", f"row {key} had errors:\n{text}"
        assert float(cell["img/s"].replace(",", "")) > 0, f"row {key} measured nothing:\n{text}"
        # A ratio to its reference everywhere but the references (and 1920×1080 over gRPC).
        reference = key[0].startswith("in-process") or key[0] == "grpc.aio empty call"
        if not reference and key != ("server", "1920×1080", "4"):
            assert float(row[-1]) > 0, f"row {key} has no ratio:\n{text}"
    best = Counter(tuple(c[:2]) for c in lines if c[0].endswith(BEST))
    assert best == {
        ("in-process (best)", "640×480"): 1,
        ("in-process (best)", "4000×3000"): 1,
        ("in-process (best)", CHELSEA): 1,
        ("in-process, full-size decode (best)", "4000×3000"): 1,
    }
    for target in (
        "throughput at concurrency 4, 640×480",
        "p50 at concurrency 1, 640×480",
        "throughput at concurrency 4, 4000×3000",
        "rejected requests at concurrency 64, queue bound 1 batch",
        "p99 of accepted requests at concurrency 64, queue bound 1 batch",
        "tiny model at concurrency 4",
        "REST p50 at concurrency 1, 640×480",
        "REST throughput at concurrency 4, 640×480",
        "default server (REST) at concurrency 4, 451×300",
        "default server (REST) p99 at concurrency 4, 451×300",
        "default server (REST) p50 at concurrency 1, 451×300",
        "default server (REST) at concurrency 4, 1920×1080",
        "verified int8 version (REST) at concurrency 4, 451×300",
        "default server (REST) at concurrency 4, 451×300, vs. in process",
        *(f"server, engine {pair} at concurrency 4, 640×480" for pair in ENGINE_PAIRS),
    ):
        assert f"| {target} |" in text, f"no target {target!r}:\n{text}"
    for fact in ("cores", "onnxruntime", "grpcio", "fastapi", "Measured 20", "CPU features: bf16"):
        assert fact in text
    assert "The int8 version's server runs it on engine " in text and " int8." in text
    int8_target = next(line for line in text.splitlines() if "| verified int8 version" in line)
    assert "skipped" not in int8_target and "no row" not in int8_target, int8_target


@pytest.mark.parametrize("app", list(PLAIN_APPS))
def test_plain_app_answers_chelsea_with_a_cat(
    app: str, imagenet_repository: Path, tmp_path: Path
) -> None:
    (version,) = list_versions(imagenet_repository / "imagenet")
    folder = imagenet_repository / "imagenet" / str(version)
    args = plain_app(folder, PLAIN_APPS[app])
    with running(args, PLAIN_APP_READY, tmp_path / "app.log") as endpoint:
        for size in ((451, 300), (1920, 1080)):
            response = httpx.post(
                f"http://{endpoint.address}{PLAIN_PATH}",
                content=chelsea_jpeg(*size),
                headers={"Content-Type": "image/jpeg"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            classes = json.loads(response.text)
            assert len(classes) == 5
            assert classes[0]["label"] in CHELSEA_TOP1, classes
            assert 0.3 < classes[0]["score"] <= 1.0, classes
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log, log


def test_without_an_int8_version_its_target_is_skipped(tmp_path: Path) -> None:
    with ExitStack() as up:
        server = start_int8(None, "imagenet", (), tmp_path, up)
    assert (server.endpoint, server.skipped, server.failed) == (None, NOT_GIVEN, None)
    row = ("server, REST, int8 version", CHELSEA, 16)
    app = (PLAIN_OPENVINO, CHELSEA, 16)
    (target,) = evaluate([Check("int8", "≥ 1.6×", row, app, "share", 1.6, NOT_GIVEN)], {})
    assert (target.measured, target.met) == (f"skipped: {NOT_GIVEN}", None)


def test_an_f32_version_given_as_int8_fails_its_target(
    imagenet_repository: Path, tmp_path: Path
) -> None:
    with ExitStack() as up:
        server = start_int8(imagenet_repository / "imagenet", "imagenet", (), tmp_path, up)
    assert server.endpoint is None and server.skipped is None
    assert server.failed is not None and "is not an int8 export (f32)" in server.failed
    fast = Measurement(100, 0, 1.0, (0.01,) * 100)
    row, app = (INT8_ROW, CHELSEA, 16), (PLAIN_OPENVINO, CHELSEA, 16)
    check = Check("int8", "≥ 1.6×", row, app, "share", 1.6, failed=server.failed)
    (target,) = evaluate([check], {row: [fast], app: [fast]})
    assert target.met is False and target.measured == f"no row: {server.failed}"


def test_int8_version_must_be_a_version_or_model_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected a version folder"):
        main(["--quick", "--int8-version", str(tmp_path)])


def test_engine_pairs_parse_and_reject_unknown_names() -> None:
    assert parse_pairs("onnxruntime:f32, auto:auto,onnxruntime:f32") == (
        EnginePair("onnxruntime", "f32"),
        EnginePair("auto", "auto"),
    )
    for bad in ("onnxruntime", "tensorrt:f32", "openvino:f16"):
        with pytest.raises(SystemExit, match="ENGINE:PRECISION"):
            parse_pairs(bad)


def test_a_pair_this_machine_lacks_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = {
        "onnxruntime": SimpleNamespace(available=lambda: None, precisions=lambda: ("f32",)),
        "openvino": SimpleNamespace(available=lambda: "openvino is not installed"),
    }
    monkeypatch.setattr(engines, "engine_module", installed.__getitem__)
    assert skip_reason(EnginePair("onnxruntime", "f32")) is None
    assert skip_reason(EnginePair("auto", "auto")) is None
    assert "bf16" in (skip_reason(EnginePair("onnxruntime", "bf16")) or "")
    assert skip_reason(EnginePair("openvino", "f32")) == "openvino is not installed"
    assert "bf16" in (skip_reason(EnginePair("auto", "bf16")) or "")


async def test_http_load_counts_a_non_200_as_an_error() -> None:
    answered: list[bytes] = []
    connections = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answered.append(await reader.readexactly(length))
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno")
            if len(answered) == 3:
                break
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        m = await load.http_load(f"127.0.0.1:{port}", "/classify", 1, 3, 5.0, b"jpeg")
    assert (m.ok, m.errors, dict(m.error_kinds)) == (0, 3, {"HTTP 503": 3})
    assert answered == [b"jpeg"] * 3
    assert len(connections) == 1, "one worker keeps one connection alive"
