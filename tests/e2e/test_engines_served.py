"""Engines and precisions as a served model shows them: status, metadata, metrics, refusals."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest

from pyserving.engines import openvino as ov_engine
from tests.onnx_models import publish, write_features_servable
from tests.processes import RunningProcess, free_port, run_cli, start_serve, wait_for
from tests.scrape import metric_sum, scrape

CPU_HAS_BF16 = "bf16" in ov_engine.precisions()
# The rule for a large model: OpenVINO bf16 where the CPU has it (and it verifies), else
# OpenVINO f32.
AUTO_IMAGENET = "openvino bf16" if CPU_HAS_BF16 else "openvino f32"


@pytest.fixture(scope="module")
def served(
    imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningProcess, str, str]]:
    """imagenet on auto; the same files pinned to ONNX Runtime; a tiny model asking bf16."""
    root = tmp_path_factory.mktemp("engines")
    publish(root / "tiny", 1, lambda f: write_features_servable(f, np.eye(2, 3), ["a", "b"]))
    config = root / "models.toml"
    config.write_text(
        f"""
[[models]]
name = "imagenet"
base_path = "{imagenet_repository / "imagenet"}"

[[models]]
name = "pinned"
base_path = "{imagenet_repository / "imagenet"}"
engine = "onnxruntime"
precision = "f32"

[[models]]
name = "tiny"
base_path = "tiny"
engine = "openvino"
precision = "bf16"
"""
    )
    port = free_port()
    server = start_serve(
        root / "server.log", "--model_config_file", str(config), "--rest_api_port", str(port)
    )
    yield server, f"127.0.0.1:{server.match.group(1)}", f"http://127.0.0.1:{port}"
    server.stop()


def status(address: str) -> dict[str, str]:
    """`pyserving status`: each model's newest version line, and its "why:" line after it."""
    out = run_cli("status", "--server", address, timeout=60)
    assert out.returncode == 0, out.stderr
    lines: dict[str, str] = {}
    model = ""
    for line in out.stdout.splitlines():
        if not line.startswith(" "):
            model = line
        elif line.split()[0] == "why:":
            lines[model] += "\n" + line
        else:
            lines[model] = line
    return lines


def settled(address: str) -> dict[str, str] | None:
    lines = status(address)
    done = [m for m, line in lines.items() if "AVAILABLE" in line or "FAILED" in line]
    return lines if len(done) == 3 else None


def test_status_shows_each_versions_engine_and_precision(
    served: tuple[RunningProcess, str, str],
) -> None:
    server, address, _ = served
    lines = wait_for(lambda: settled(address), 30, "every model loaded or failed")
    assert "AVAILABLE" in lines["pinned"] and "onnxruntime f32" in lines["pinned"]
    auto = lines["imagenet"].split()
    assert auto[1:4] == ["AVAILABLE", *(AUTO_IMAGENET.split())]
    assert "\n                why: rule: model.onnx is " in lines["imagenet"]
    assert lines["pinned"].endswith("\n                why: as asked")
    if CPU_HAS_BF16:
        # No reference set, but asked for by name: it runs unverified.
        assert "openvino bf16" in lines["tiny"]
    else:
        assert "FAILED" in lines["tiny"]
        assert "no engine can run precision bf16 with engine openvino here" in lines["tiny"]
        assert "bf16 needs a CPU with avx512_bf16 or AMX" in lines["tiny"]
    assert "runs on engine onnxruntime f32 (as asked)" in server.output()


def test_metadata_and_metrics_name_the_engine(served: tuple[RunningProcess, str, str]) -> None:
    _, _, rest = served
    v2 = httpx.get(f"{rest}/v2/models/pinned", timeout=10).json()
    assert (v2["parameters"]["engine"], v2["parameters"]["precision"]) == ("onnxruntime", "f32")
    tf = httpx.get(f"{rest}/v1/models/pinned/metadata", timeout=10).json()
    assert tf["metadata"]["engine"] == {"name": "onnxruntime", "precision": "f32"}
    tf_status = httpx.get(f"{rest}/v1/models/pinned", timeout=10).json()
    assert tf_status["model_version_status"][0]["engine"]["name"] == "onnxruntime"
    text = scrape(rest)
    assert metric_sum(text, "pyserving_version_engine", model="pinned", engine="onnxruntime") == 1
    assert metric_sum(text, "pyserving_version_engine", model="pinned", engine="openvino") == 0
    auto = httpx.get(f"{rest}/v2/models/imagenet", timeout=10).json()["parameters"]["engine"]
    assert metric_sum(text, "pyserving_version_engine", model="imagenet", engine=auto) == 1


def test_a_failed_model_leaves_the_others_serving(
    served: tuple[RunningProcess, str, str], chelsea_jpeg: bytes
) -> None:
    _, _, rest = served
    answer = httpx.post(
        f"{rest}/v1/models/imagenet:classify",
        content=chelsea_jpeg,
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0][0][0] == "Egyptian cat"


def run_serve(*flags: str) -> subprocess.CompletedProcess[str]:
    return run_cli("serve", "--port", "0", "--rest_api_port", "0", *flags, timeout=60)


def test_bad_engine_flags_are_refused_in_one_line(tmp_path: Path) -> None:
    out = run_serve("--model_base_path", str(tmp_path), "--engine", "tvm")
    assert out.returncode == 2
    assert "invalid choice: 'tvm' (choose from 'auto', 'onnxruntime', 'openvino')" in out.stderr
    out = run_serve("--model_base_path", str(tmp_path), "--precision", "fp8")
    assert out.returncode == 2 and "choose from 'auto', 'f32', 'bf16'" in out.stderr
    out = run_serve("--model_base_path", str(tmp_path), "--precision_tolerance", "3")
    assert out.returncode == 2  # a bad flag value is a usage error
    assert out.stderr.strip() == (
        "error: --precision_tolerance is a probability difference from 0 to 1, got 3.0"
    )
    config = tmp_path / "models.toml"
    config.write_text('[[models]]\nname = "m"\nbase_path = "m"\nengine = "tvm"\n')
    out = run_serve("--model_config_file", str(config))
    assert out.returncode == 1
    assert "model 'm': engine 'tvm' is not one of auto, onnxruntime, openvino" in out.stderr


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """A busy loop on every core, for at most two minutes, stopped after the test."""
    from pyserving.cores import usable_cores

    loop = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end: pass"
    burners = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(usable_cores())]
    yield
    for burner in burners:
        burner.kill()
        burner.wait(10)


RUNS_ON = re.compile(r"model imagenet version \d+ runs on engine (\S+) (\S+) \(([^\n]*)\)")


def engine_line(server: RunningProcess) -> re.Match[str] | None:
    return RUNS_ON.search(server.output())


def test_auto_makes_the_same_choice_on_every_start_under_load(
    imagenet_repository: Path, tmp_path: Path, busy_cores: None
) -> None:
    choices = []
    for start in range(3):
        server = start_serve(
            tmp_path / f"server{start}.log",
            "--model_name",
            "imagenet",
            "--model_base_path",
            str(imagenet_repository / "imagenet"),
            "--compiled_model_cache",
            str(tmp_path / "cache"),
        )
        try:
            match = wait_for(partial(engine_line, server), 120, "the engine line")
        finally:
            server.stop()
        choices.append(match.groups()[:2])
    assert choices == [tuple(AUTO_IMAGENET.split())] * 3, match.group(3)
    assert match.group(3).startswith("rule: model.onnx is ")


def test_a_broken_compiled_model_cache_is_ignored_and_rewritten(
    imagenet_repository: Path, tmp_path: Path, chelsea_jpeg: bytes
) -> None:
    cache = tmp_path / "cache"
    flags = ["--model_name", "imagenet", "--model_base_path", str(imagenet_repository / "imagenet")]
    flags += ["--engine", "openvino", "--compiled_model_cache", str(cache)]
    first = start_serve(tmp_path / "first.log", *flags)
    try:
        wait_for(partial(engine_line, first), 120, "the engine line")
    finally:
        first.stop()
    blobs = sorted(f for f in cache.rglob("*") if f.is_file())
    assert blobs
    garbage = {}
    for number, blob in enumerate(blobs):
        size = blob.stat().st_size
        # Half of them cut short, the others the same length of noise.
        garbage[blob] = np.random.default_rng(number).bytes(size // 2 if number % 2 else size)
        blob.write_bytes(garbage[blob])
    port = free_port()
    again = start_serve(tmp_path / "again.log", *flags, "--rest_api_port", str(port))
    try:
        wait_for(partial(engine_line, again), 120, "the engine line")
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/imagenet:classify",
            content=chelsea_jpeg,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
    finally:
        again.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0][0][0] == "Egyptian cat"
    assert sorted(f for f in cache.rglob("*") if f.is_file()) == blobs
    for blob in blobs:
        assert blob.read_bytes() != garbage[blob], f"{blob.name} was not rewritten"
