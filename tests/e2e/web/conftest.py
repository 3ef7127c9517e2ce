"""Fixtures for the web app's end-to-end tests: real processes, Debian's chromium."""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from playwright.sync_api import Page
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tests.onnx_models import publish, write_features_servable, write_image_servable
from tests.processes import (
    RunningProcess,
    run_cli,
    start_process,
    start_serve,
    start_server,
    wait_for,
)

WEB_READY = r"web app listening on http://[^\s:]+:(\d+)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A fake microphone (a beeping tone) that the page may use without asking.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SCRIPT_LABEL = "<script>alert(1)</script>"
EGYPTIAN_CAT = 285  # line 286 of labels.txt

StartWeb = Callable[..., str]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium: Playwright's own browser download cannot work offline."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    return {**browser_type_launch_args, "executable_path": chromium, "args": CHROMIUM_ARGS}


@pytest.fixture
def page(page: Page) -> Page:
    """pytest-playwright's page, with file choosers intercepted for the whole test.

    `expect_file_chooser` switches interception off when it returns and on again when next
    called; a key press can win that race and open a chooser no one sees.
    """
    page.on("filechooser", lambda chooser: None)
    return page


@pytest.fixture(scope="session")
def start_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartWeb]:
    """Start `pyserving web --server ADDRESS [ARGS]` on a free port; returns its base URL.

    Every process started is stopped at the end of the session, and must exit cleanly.
    """
    started: list[RunningProcess] = []

    def start(server: str, *args: str) -> str:
        log = tmp_path_factory.mktemp("web") / "web.log"
        web = start_process(
            ["web", "--server", server, "--host", "127.0.0.1", "--port", "0", *args],
            WEB_READY,
            log,
        )
        started.append(web)
        return f"http://127.0.0.1:{web.match.group(1)}"

    yield start
    for web in started:
        assert web.stop() == 0, web.output()


@pytest.fixture(scope="session")
def web_url(start_web: StartWeb, server_address: str) -> str:
    """The web app in front of the session's imagenet model server."""
    return start_web(server_address)


@pytest.fixture(scope="session")
def small_limit_url(start_web: StartWeb, server_address: str) -> str:
    """A web app that takes uploads of at most 1 MiB."""
    return start_web(server_address, "--max_upload_mib", "1")


@pytest.fixture(scope="session")
def script_label_url(
    start_web: StartWeb, imagenet_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A web app whose model calls class 285 (Chelsea's) `<script>alert(1)</script>`."""
    repository = tmp_path_factory.mktemp("script-label")
    (version,) = (imagenet_repository / "imagenet").iterdir()
    copy = shutil.copytree(version, repository / "imagenet" / version.name)
    labels = (copy / "labels.txt").read_text("utf-8").splitlines()
    labels[EGYPTIAN_CAT] = SCRIPT_LABEL
    (copy / "labels.txt").write_text("".join(f"{label}\n" for label in labels), "utf-8")
    log = tmp_path_factory.mktemp("logs") / "script-label-server.log"
    server = start_server("imagenet", repository / "imagenet", log)
    yield start_web(f"127.0.0.1:{server.match.group(1)}")
    server.stop()


# A small language identifier's training set: a few sentences of each language.
SENTENCES = {
    "English": [
        "The weather is nice today and the children play outside.",
        "Where is the nearest train station, please?",
        "I would like a cup of tea with milk.",
        "This book tells the story of a small village by the sea.",
        "We are going to the market on Saturday morning.",
        "Please close the window when you leave the room.",
        "The meeting was moved to next Thursday afternoon.",
        "How much does this ticket cost?",
    ],
    "French": [
        "Il fait beau aujourd'hui et les enfants jouent dehors.",
        "Où est la gare la plus proche, s'il vous plaît ?",
        "Je voudrais une tasse de thé avec du lait.",
        "Ce livre raconte l'histoire d'un petit village au bord de la mer.",
        "Nous allons au marché samedi matin.",
        "Fermez la fenêtre quand vous quittez la pièce, s'il vous plaît.",
        "La réunion a été déplacée à jeudi prochain après-midi.",
        "Combien coûte ce billet ?",
    ],
    "German": [
        "Das Wetter ist heute schön und die Kinder spielen draußen.",
        "Wo ist der nächste Bahnhof, bitte?",
        "Ich möchte eine Tasse Tee mit Milch.",
        "Dieses Buch erzählt die Geschichte eines kleinen Dorfes am Meer.",
        "Wir gehen am Samstagmorgen auf den Markt.",
        "Bitte schließen Sie das Fenster, wenn Sie den Raum verlassen.",
        "Die Besprechung wurde auf nächsten Donnerstagnachmittag verschoben.",
        "Wie viel kostet diese Fahrkarte?",
    ],
}
FEATURES = ("petal length", "petal width")
FEATURE_CLASSES = ("longer", "wider")  # x @ identity: the larger feature's class wins
HAS_AUDIO = importlib.util.find_spec("pyserving.kinds.audio") is not None


@dataclass(frozen=True)
class KindsApp:
    """The web app in front of a server with a model of each kind the machine can serve."""

    url: str
    models: tuple[str, ...]
    language_model: Any  # the fitted scikit-learn pipeline `lang` was exported from


@pytest.fixture(scope="session")
def kinds_app(start_web: StartWeb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsApp]:
    """`colours` (image), `lang` (text: a scikit-learn pipeline trained and exported here
    with the CLI), `lin` (features) and, where the audio kind is installed, `speech`."""
    work = tmp_path_factory.mktemp("kinds")
    texts = [t for sentences in SENTENCES.values() for t in sentences]
    labels = [language for language, sentences in SENTENCES.items() for _ in sentences]
    language_model = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False),
        LogisticRegression(C=10, max_iter=1000),
    ).fit(texts, labels)
    joblib.dump(language_model, work / "lang.joblib")
    models = {"colours": work / "colours", "lang": work / "models" / "lang", "lin": work / "lin"}
    run_cli(
        "export", "sklearn", "lang.joblib", "--input", "text", "--name", "lang",
        "--labels", ",".join(sorted(SENTENCES)), cwd=work, timeout=180, check=True,
    )  # fmt: skip
    if HAS_AUDIO:
        run_cli("export", "silero-vad", "--name", "speech", cwd=work, timeout=180, check=True)
        models["speech"] = work / "models" / "speech"
    publish(models["colours"], 1, write_image_servable)
    weights = np.eye(2, dtype=np.float32)
    publish(
        models["lin"], 1, lambda f: write_features_servable(f, weights, FEATURES, FEATURE_CLASSES)
    )
    config = work / "models.toml"
    config.write_text(
        "".join(f'[[models]]\nname = "{n}"\nbase_path = "{p}"\n\n' for n, p in models.items())
    )
    server = start_serve(work / "server.log", "--model_config_file", str(config))
    url = start_web(f"127.0.0.1:{server.match.group(1)}", "--models", ",".join(models))

    def every_kind_known() -> bool:
        answer = httpx.get(f"{url}/api/models", timeout=5).json()["models"]
        return all(m["kind"] for m in answer)

    wait_for(every_kind_known, 60, "every model loaded and its kind known to the web app")
    yield KindsApp(url, tuple(models), language_model)
    server.stop()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
