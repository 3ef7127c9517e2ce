"""The package as people install it: the wheel, in a fresh venv with no extras, then [web].

The venv is made once for the module (about 15 s with pip's cache warm). Every command runs
with the venv's own `pyserving` or `python`, from a folder outside the repository and
without PYTHONPATH, so nothing of the source tree or the dev install leaks in. The tests
run in file order: the last one installs [web] into the venv.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pyserving
from pyserving.kinds import write_signature
from pyserving.kinds.audio import AudioFields
from pyserving.signature import MODEL_FILE, Signature
from tests.onnx_models import publish, write_image_servable
from tests.processes import GRPC_READY, wait_for

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SECONDS = 240  # a budget for pip: generous, so a slow mirror fails loudly, not hangs
EXTRAS = (
    "torch",
    "onnx",
    "jinja2",
    "soundfile",
    "soxr",
    "openvino",
    "sklearn",
    "tensorflow",
    "boto3",
)
AUDIO_LINE = (
    "an audio model needs soundfile, which is not installed; install it with: "
    "pip install 'pyserving[audio]'"
)
OPENVINO_LINE = "openvino is not installed; install it with: pip install 'pyserving[openvino]'"


@dataclass
class Venv:
    """A fresh virtual environment with the wheel installed; `run` calls its programs."""

    root: Path
    wheel: Path
    cwd: Path
    install_seconds: float

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**env, "PYTHONUNBUFFERED": "1", "PATH": f"{self.root / 'bin'}:{env['PATH']}"}

    def program(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`pyserving ARGS` from the venv."""
        return self.call(self.program("pyserving"), *args, timeout=timeout)

    def call(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
            env=self.env,
        )

    def start(self, log: Path, *args: str, ready: str) -> tuple[subprocess.Popen[bytes], str]:
        """Start `pyserving ARGS` in the background; its process and the ready line's group."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                [self.program("pyserving"), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
            )

        def started() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"pyserving {args[0]} exited:\n{log.read_text()}")
            match = re.search(ready, log.read_text(errors="replace"))
            return match.group(1) if match else None

        return process, wait_for(started, 60, f"pyserving {args[0]} to start")


def build_wheel(out: Path) -> Path:
    """The wheel of the source tree as it is, built from a clean copy (no stale build/)."""
    tree = out / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out / "dist"), str(tree)],
        check=True,
        timeout=120,
    )  # fmt: skip
    (wheel,) = (out / "dist").glob("pyserving-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel, installed with no extras into a venv of its own (no system packages)."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, "--disable-pip-version-check", str(wheel)], check=True, timeout=INSTALL_SECONDS
    )
    cwd = root / "work"
    cwd.mkdir()
    return Venv(root / "venv", wheel, cwd, time.perf_counter() - started)


def test_the_wheel_carries_its_files_and_metadata(venv: Venv) -> None:
    names = set(zipfile.ZipFile(venv.wheel).namelist())
    dist_info = f"pyserving-{pyserving.__version__}.dist-info"
    for name in (
        f"{dist_info}/licenses/LICENSE",
        "pyserving/py.typed",
        "pyserving/data/imagenet_labels.txt",
        "pyserving/web/templates/index.html",
        "pyserving/web/static/app.js",
        "pyserving/web/static/app.css",
        "pyserving/cli/main.py",
        "pyserving/core/service.py",
        "pyserving/client/client.py",
        "pyserving/_proto/classification_pb2.py",
    ):
        assert name in names, name
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    metadata = zipfile.ZipFile(venv.wheel).read(f"{dist_info}/METADATA").decode()
    assert re.search(r"^Project-URL: Source, https://", metadata, re.M)
    assert re.search(r"^Classifier: Programming Language :: Python :: 3\.11$", metadata, re.M)
    assert "Provides-Extra: web" in metadata and "Provides-Extra: audio" in metadata


def test_the_venv_has_the_wheel_and_no_extras(venv: Venv) -> None:
    probe = (
        "import importlib.util, pyserving; print(pyserving.__file__); "
        f"print([m for m in {list(EXTRAS)!r} if importlib.util.find_spec(m)])"
    )
    where, found = venv.call(venv.program("python"), "-c", probe).stdout.splitlines()
    assert where.startswith(str(venv.root)), where
    assert found == "[]"
    print(f"wheel installed with its dependencies in {venv.install_seconds:.1f} s")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--version"], 0),
        ([], 2),
        (["web"], 2),
        (["classify"], 2),
        (["status", "--server", "127.0.0.1:1", "--timeout", "2"], 1),
    ],
    ids=["version", "no-command", "web", "classify-nothing", "status-unreachable"],
)
def test_python_m_pyserving_is_pyserving(venv: Venv, args: list[str], code: int) -> None:
    script = venv.run(*args)
    module = venv.call(venv.program("python"), "-m", "pyserving", *args)
    assert script.returncode == code, script.stderr
    assert (module.returncode, module.stdout, module.stderr) == (
        script.returncode,
        script.stdout,
        script.stderr,
    )


def test_version(venv: Venv) -> None:
    result = venv.run("--version")
    assert (result.returncode, result.stdout) == (0, f"pyserving {pyserving.__version__}\n")


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["export", "efficientnet-lite0", "--repository", "m"], "export"),
        (["export", "torch", "--factory", "m:f", "--input-size", "8", "--labels", "a"], "torch"),
        (["export", "keras", "model.keras", "--labels", "a,b"], "tensorflow"),
        (["export", "sklearn", "model.joblib"], "sklearn"),
        (["export", "onnx", "model.onnx", "--labels", "a,b"], "onnx"),
        (["export", "silero-vad", "--repository", "m"], "onnx"),
        (["web"], "web"),
        (["serve", "--model_base_path", "m", "--engine", "openvino"], "openvino"),
        (["serve", "--model_base_path", "s3://bucket-1/m"], "s3"),
        (["export", "onnx", "model.onnx", "--labels", "a,b", "--repository", "s3://b-1/m"], "s3"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v[:2]),
)
def test_a_missing_extra_is_one_line_and_exit_2(venv: Venv, args: list[str], extra: str) -> None:
    result = venv.run(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and " is not installed; install it with: " in line
    assert line.endswith(f"pip install 'pyserving[{extra}]'"), line


def audio_model() -> onnx.ModelProto:
    """float32 [N, T] → `logits` [N, 2]: the mean sample, and its negation."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["samples", "axes"], ["mean"], keepdims=1),
            helper.make_node("Neg", ["mean"], ["neg"]),
            helper.make_node("Concat", ["mean", "neg"], ["logits"], axis=1),
        ],
        "mean_sample",
        [helper.make_tensor_value_info("samples", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def write_audio_servable(folder: Path) -> None:
    folder.mkdir(parents=True)
    onnx.save(audio_model(), str(folder / MODEL_FILE))
    write_signature(
        Signature(
            kind="audio",
            input_name="samples",
            input_dtype="float32",
            output_name="logits",
            scores="logits",
            labels=("up", "down"),
            top_k=2,
            fields=AudioFields(16000),
        ),
        folder,
    )


@pytest.fixture(scope="module")
def served(
    venv: Venv, imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The venv's `pyserving serve`: EfficientNet (exported by the dev install), an audio
    model (no [audio] here) and an image model asking for OpenVINO (no [openvino])."""
    root = tmp_path_factory.mktemp("installed-models")
    publish(root / "speech", 1, write_audio_servable)
    publish(root / "colours", 1, write_image_servable)
    config = root / "models.toml"
    config.write_text(
        'default = "imagenet"\n'
        f'[[models]]\nname = "imagenet"\nbase_path = "{imagenet_repository / "imagenet"}"\n'
        '[[models]]\nname = "speech"\nbase_path = "speech"\n'
        '[[models]]\nname = "colours"\nbase_path = "colours"\nengine = "openvino"\n'
    )
    process, port = venv.start(
        root / "server.log",
        "serve",
        "--model_config_file",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--rest_api_port",
        "0",
        "--drain_seconds",
        "0",
        ready=GRPC_READY,
    )
    yield f"127.0.0.1:{port}"
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def test_serve_status_refuses_what_needs_an_extra(venv: Venv, served: str) -> None:
    def settled() -> str | None:
        out = venv.run("status", "--server", served).stdout
        return None if "LOADING" in out or out.count("FAILED") < 2 else out

    out = wait_for(settled, 60, "every version loaded or failed")
    models = dict(re.findall(r"^(\w+)\n((?:  .*\n?)+)", out, re.M))
    assert "AVAILABLE" in models["imagenet"] and "onnxruntime f32" in models["imagenet"]
    assert "FAILED" in models["speech"] and AUDIO_LINE in models["speech"]
    assert "FAILED" in models["colours"] and OPENVINO_LINE in models["colours"]


def test_classify_and_health(venv: Venv, served: str, chelsea_jpeg: bytes) -> None:
    photo = venv.cwd / "chelsea.jpg"
    photo.write_bytes(chelsea_jpeg)
    table = venv.run("classify", str(photo), "--server", served)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[2].split()[:3] == ["1", "Egyptian", "cat"]
    folder = venv.cwd / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(chelsea_jpeg)
    (folder / "notes.txt").write_text("skipped")
    (folder / "broken.jpg").write_bytes(chelsea_jpeg[:300])  # a JPEG cut short
    rows = venv.run("classify", str(folder), "--server", served, "--output", "rows.csv")
    assert rows.returncode == 1, rows.stderr  # the broken JPEG
    read = {
        Path(r["path"]).name: r
        for r in csv.DictReader(io.StringIO((venv.cwd / "rows.csv").read_text()))
    }
    assert {name: r["status"] for name, r in read.items()} == {
        "0.jpg": "ok",
        "1.jpg": "ok",
        "2.jpg": "ok",
        "broken.jpg": "error",
        "notes.txt": "skipped",
    }
    assert {r["class_1"] for r in read.values() if r["status"] == "ok"} == {"Egyptian cat"}
    assert "could not decode image" in read["broken.jpg"]["error"]
    assert "3 classified, 1 failed, 1 skipped" in rows.stderr
    health = venv.run("health", "--server", served)
    assert (health.returncode, health.stdout.split()[-1]) == (0, "SERVING"), health.stdout
    assert venv.run("health", "--server", served, "--service", "speech").returncode == 1


def test_web_extra_then_healthz(venv: Venv, served: str) -> None:
    """Last in the file: it installs [web] into the module's venv."""
    started = time.perf_counter()
    install = venv.call(
        venv.program("python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        f"pyserving[web] @ {venv.wheel.as_uri()}",
        timeout=INSTALL_SECONDS,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    print(f"[web] installed in {time.perf_counter() - started:.1f} s")
    process, port = venv.start(
        venv.cwd / "web.log",
        "web",
        "--server",
        served,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        ready=r"web app listening on http://[^\s:]+:(\d+)",
    )
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.status_code == 200, answer.text
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "imagenet" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/static/app.js", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
