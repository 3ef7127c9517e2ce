"""Iris end to end: train a scikit-learn classifier, export it, serve it, classify over gRPC.

    python examples/train_iris.py [--workdir DIR]

Needs `pip install 'pyserving[sklearn]'`. Exits 0 when the server's predictions equal
scikit-learn's on all 150 flowers.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pyserving.client import Client

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SPECIES = ("setosa", "versicolor", "virginica")
READY = re.compile(r"gRPC listening on [^\s]+:(\d+)")


def pyserving(*args: str) -> list[str]:
    """The `pyserving` command of this Python, as a subprocess argument list."""
    return [sys.executable, "-m", "pyserving", *args]


def train(path: Path) -> Any:
    """Fit a scaler and logistic regression on the Iris data set and save it with joblib."""
    iris = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(iris.data, iris.target)
    joblib.dump(model, path)
    print(f"trained StandardScaler + LogisticRegression on {len(iris.data)} flowers: {path}")
    return model


def export(model_file: Path, repository: Path) -> Path:
    """The export command from the README, run as a user would."""
    command = pyserving(
        "export",
        "sklearn",
        str(model_file),
        "--features",
        ",".join(FEATURES),
        "--labels",
        ",".join(SPECIES),
        "--repository",
        str(repository),
    )
    print("$", " ".join(command[2:]))
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip())


def serve(base_path: Path, log: Path, timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start `pyserving serve` on a free port; wait for its ready line with a deadline."""
    with log.open("wb") as out:
        server = subprocess.Popen(
            pyserving(
                "serve",
                "--model_name",
                "iris",
                "--model_base_path",
                str(base_path),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--rest_api_port",
                "0",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = READY.search(log.read_text(errors="replace"))
        if match:
            return server, int(match.group(1))
        if server.poll() is not None:
            break
        time.sleep(0.05)
    server.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")


def classify_all(address: str, model: Any) -> int:
    """Classify every flower over gRPC; return how many answers differ from scikit-learn's."""
    iris = load_iris()
    expected = model.predict(iris.data.astype(np.float32))
    differ = 0
    with Client(address) as client:
        for i, (row, want) in enumerate(zip(iris.data, expected, strict=True)):
            features = dict(zip(FEATURES, map(float, row), strict=True))
            best = client.classify(features=features).predictions[0]
            differ += best.index != want
            if i == 0:
                print(f"flower 0 {features}: {best.name} ({best.score:.1%})")
    agree = len(expected) - differ
    print(f"served predictions equal scikit-learn's on {agree}/{len(expected)} flowers")
    return differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        model = train(workdir / "iris.joblib")
        version = export(workdir / "iris.joblib", workdir / "models")
        server, port = serve(version.parent, workdir / "server.log")
        try:
            address = f"127.0.0.1:{port}"
            differ = classify_all(address, model)
            command = pyserving("classify", "--server", address, "--model", "iris")
            for name, value in zip(FEATURES, (6.3, 3.3, 6.0, 2.5), strict=True):
                command += ["--feature", f"{name}={value}"]
            print("$", " ".join(command[2:]))
            subprocess.run(command, check=True)
        finally:
            server.terminate()
            server.wait(30)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
