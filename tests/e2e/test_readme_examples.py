"""The README's examples, run exactly as written against a real server on free ports.

Every `pyserving ...` and `curl ...` line of the README's shell blocks (continuation lines
joined) and its Python snippet run in a folder holding the files they name (`photo.jpg`,
`cat.jpg`, `clip.wav`), against one server that serves the models they name: EfficientNet-
Lite0 (`imagenet`), the 14-language identifier trained by `examples/train_language_id.py`
(`language`), Silero VAD (`speech`), the Iris classifier of `examples/train_iris.py`
(`iris`) and a regression exported as a tensor model (`reg`). Only the addresses change:
`localhost:9999` and `localhost:8501` become the server's ports. `make run` and `make test`
are the two commands themselves (tests/e2e/test_make_run.py, and this run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from examples import train_iris as iris
from examples import train_language_id as lid
from pyserving.cli.main import main
from tests.audio_clips import espeak
from tests.onnx_models import regression_model
from tests.processes import free_port, start_serve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# What each example must print, by the model it names: the README's own claims.
EXPECTED = {
    "imagenet": "Egyptian cat",
    "language": "  1  de ",
    "speech": "  1  speech ",
    "iris": "  1  setosa ",
    "reg": '"predictions"',
}


@dataclass(frozen=True)
class Example:
    """One command of the README, as written, and the README line it starts on."""

    line: int
    text: str
    python: bool = False


def examples() -> list[Example]:
    """The README's runnable commands: shell lines and the Python snippet of its blocks."""
    found: list[Example] = []
    lines = README.read_text().splitlines()
    block: list[tuple[int, str]] | None = None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if block is None and line.strip() == "```bash":
                block = []
            elif block is not None:
                found += _commands(block)
                block = None
        elif block is not None:
            block.append((number, line))
    return found


def _commands(block: list[tuple[int, str]]) -> list[Example]:
    commands: list[Example] = []
    python: list[tuple[int, str]] = []  # Python lines, and the indented ones under them
    for number, line in block:
        indented = line.startswith(" ") and python and python[-1][0] == number - 1
        if line.startswith(("from ", "import ", "with ")) or indented:
            python.append((number, line))
    joined: list[tuple[int, str]] = []
    for number, line in block:
        if (number, line) in python:
            continue
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
        else:
            joined.append((number, line))
    for number, line in joined:
        if line.startswith(("pyserving ", "curl ")):
            commands.append(Example(number, line))
    if python:
        commands.append(Example(python[0][0], "\n".join(line for _, line in python), True))
    return commands


@dataclass(frozen=True)
class Served:
    """Where the examples run: their folder, and the server's gRPC and REST ports."""

    folder: Path
    grpc: int
    rest: int


@pytest.fixture(scope="module")
def served(
    imagenet_repository: Path, chelsea_jpeg: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("readme")
    models = work / "models"
    shutil.copytree(imagenet_repository / "imagenet", models / "imagenet")
    try:
        corpus = lid.split(lid.pages(lid.fetch(work / "manpages")))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        pytest.skip(f"the manpages-* packages could not be fetched with apt-get download: {exc}")
    lid.train(corpus, work / "language.joblib")
    lid.export(work / "language.joblib", corpus.held_out[:100], work)  # into work/models
    iris.train(work / "iris.joblib")
    iris.export(work / "iris.joblib", models)
    speech = ["export", "silero-vad", "--repository", str(models), "--name", "speech"]
    assert main(speech) == 0
    weights = np.arange(6, dtype=np.float32).reshape(3, 2)
    onnx.save(regression_model(weights, np.zeros(2, np.float32)), str(work / "reg.onnx"))
    tensor = ["export", "onnx", str(work / "reg.onnx"), "--kind", "tensor", "--name", "reg"]
    assert main([*tensor, "--repository", str(models)]) == 0
    config = work / "models.toml"
    config.write_text(
        'default = "imagenet"\n'
        + "".join(
            f'[[models]]\nname = "{name}"\nbase_path = "{models / name}"\n'
            for name in ("imagenet", "language", "speech", "iris", "reg")
        )
    )
    for name in ("photo.jpg", "cat.jpg"):
        (work / name).write_bytes(chelsea_jpeg)
    espeak("Hello, this is a recording of someone speaking.", "en", work / "clip.wav")
    rest = free_port()
    server = start_serve(
        work / "server.log", "--model_config_file", str(config), "--rest_api_port", str(rest)
    )
    yield Served(work, int(server.match.group(1)), rest)
    server.stop()


EXAMPLES = examples()


def test_the_readme_has_an_example_per_input_kind() -> None:
    text = "\n".join(e.text for e in EXAMPLES)
    assert all(f"--model {m}" in text or f"/models/{m}" in text for m in EXPECTED), text
    assert any(e.python for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"README:{e.line}" for e in EXAMPLES])
def test_a_readme_example_runs_as_written(served: Served, example: Example) -> None:
    text = example.text.replace("localhost:9999", f"localhost:{served.grpc}")
    text = text.replace("localhost:8501", f"localhost:{served.rest}")
    argv = [sys.executable, "-c", text] if example.python else ["bash", "-c", text]
    # `pyserving` on the PATH, as `source .venv/bin/activate` puts it (the README says so).
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    result = subprocess.run(
        argv,
        cwd=served.folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and '"error"' not in output, output
    model = re.search(r"--model (\w+)|/models/(\w+)", text)
    name = next(g for g in model.groups() if g) if model else "imagenet"
    assert EXPECTED[name] in output, output
