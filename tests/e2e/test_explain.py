"""Explanations from real servers and real models: a cat on one half of a photo, German and
French words in one sentence, Iris's petals, speech between two silences; the CLI's heatmap;
and the refusals a client sees."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data as skimage_data
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from examples import train_language_id as lid
from pyserving.client import Client
from pyserving.errors import RemoteError
from pyserving.export.sklearn import export_sklearn
from pyserving.results import Explanation
from tests.audio_clips import espeak
from tests.manpages import manpage_corpus
from tests.processes import RunningProcess, free_port, run_cli, start_server

CAT = "Egyptian cat"
MIN_SHARE = 0.8  # of the heatmap's positive mass on the cat's half (the bar)
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def composite(mirror: bool, background: tuple[int, int, int]) -> bytes:
    """Chelsea the cat filling the left half of a plain 448×224 photo (the right half if
    `mirror`), as JPEG."""
    cat = Image.fromarray(skimage_data.chelsea()).crop((60, 0, 360, 300)).resize((224, 224))
    canvas = Image.new("RGB", (448, 224), background)
    canvas.paste(cat, (0, 0))
    if mirror:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def share_on(answer: Explanation, left: bool) -> float:
    """The share of the heatmap's positive mass on the left (or right) half of the grid."""
    rows, columns = answer.grid
    weights = np.array([p.weight for p in answer.parts]).reshape(rows, columns)
    positive = np.clip(weights, 0, None)
    # A middle column (odd grids) is half on each side.
    half = np.zeros(columns)
    half[: columns // 2] = 1.0
    if columns % 2:
        half[columns // 2] = 0.5
    side = half if left else half[::-1]
    return float((positive.sum(0) * side).sum() / positive.sum())


@pytest.mark.parametrize("background", [(255, 255, 255), (90, 140, 200), (30, 30, 30)])
def test_the_cat_s_half_carries_the_heat_in_both_mirror_images(
    server_address: str, background: tuple[int, int, int]
) -> None:
    with Client(server_address, timeout=120) as client:
        for mirror in (False, True):
            answer = client.explain(composite(mirror, background), class_name=CAT)
            assert answer.explained.name == CAT and answer.grid == (8, 8)
            share = share_on(answer, left=not mirror)
            assert share >= MIN_SHARE, f"mirror={mirror}: {share:.2f} of the mass on the cat"


def test_the_cli_writes_the_heatmap_over_the_photo(server_address: str, tmp_path: Path) -> None:
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(composite(False, (255, 255, 255)))
    heat = tmp_path / "heat.png"
    done = run_cli(
        "explain", str(photo), "--class", CAT, "--output", str(heat), "--server", server_address
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{CAT} (") and f"wrote {heat}" in done.stdout
    grid = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert len(grid) == 8 and all(len(row) == 8 for row in grid)
    drawn = np.asarray(Image.open(heat).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(photo).convert("RGB"), dtype=np.int16)
    assert drawn.shape == original.shape
    # Red is laid over the cat (left), the white half stays nearly as it was.
    change = np.abs(drawn - original).sum(2)
    assert change[:, :224].mean() > 2 * change[:, 224:].mean()
    done = run_cli("explain", str(photo), "--class", "Egyptian kat", "--server", server_address)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no class 'Egyptian kat'" in done.stderr and "'Egyptian cat'" in done.stderr


def test_rest_explains_a_raw_photo(imagenet_repository: Path, tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        "imagenet",
        imagenet_repository / "imagenet",
        tmp_path / "server.log",
        "--rest_api_port",
        str(port),
        "--max_explain_inputs",
        "40",
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/models/imagenet:explain"
        photo = composite(True, (255, 255, 255))
        with httpx.Client(timeout=120) as http:
            reply = http.post(url, content=photo, headers={"Content-Type": "image/jpeg"})
        # 8×8 cells and the photo itself are over the limit of 40 inputs.
        assert reply.status_code == 400, reply.text
        assert "65 inputs" in reply.json()["error"] and "--max_explain_inputs" in reply.text
    finally:
        assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def language(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The 14-language identifier trained as tests/e2e/test_language_id.py does, served."""
    workdir = tmp_path_factory.mktemp("language")
    corpus = manpage_corpus(workdir)
    lid.train(corpus, workdir / "language.joblib")
    version = lid.export(workdir / "language.joblib", corpus.held_out[:50], workdir)
    server: RunningProcess = start_server("language", version.parent, workdir / "server.log")
    try:
        yield f"127.0.0.1:{server.match.group(1)}"
    finally:
        assert server.stop() == 0, server.output()


GERMAN = "Die Datei wird nicht gefunden und das Verzeichnis ist leer"
FRENCH = "le fichier est introuvable et le répertoire est vide"


def test_german_words_weigh_for_de_and_french_words_for_fr(language: str) -> None:
    sentence = f"{GERMAN} {FRENCH}"
    german = len(GERMAN.split())
    with Client(language) as client:
        for name, own, other in (
            ("de", slice(0, german), slice(german, None)),
            ("fr", slice(german, None), slice(0, german)),
        ):
            answer = client.explain(sentence.encode(), class_name=name)
            assert [p.name for p in answer.parts] == sentence.split()
            weights = np.array([p.weight for p in answer.parts])
            assert weights[own].mean() > weights[other].mean(), (name, weights)
        words = " ".join(["Wort"] * 200).encode()
        with pytest.raises(RemoteError, match="201 inputs.*--max_explain_inputs") as refused:
            client.explain(words)
        assert refused.value.grpc_code == "INVALID_ARGUMENT"


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Iris (StandardScaler, logistic regression) exported with its means, served."""
    workdir = tmp_path_factory.mktemp("iris")
    data = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data.data, data.target)
    labels = list(data.target_names)
    version = export_sklearn(model, workdir / "models", "iris", features=IRIS, labels=labels)
    server: RunningProcess = start_server("iris", version.parent, workdir / "server.log")
    try:
        yield f"127.0.0.1:{server.match.group(1)}"
    finally:
        assert server.stop() == 0, server.output()


def test_petals_weigh_more_than_sepals_for_the_predicted_class(iris: str) -> None:
    """Over every flower, each explained for its predicted class: the logistic regression's
    petal coefficients are the largest (by size, on standardised features), and the petal
    features' weights are larger than the sepal features' (a flower's probability is often
    near 0 or 1, so one flower alone can go either way)."""
    data = load_iris()
    weights = []
    with Client(iris) as client:
        for row in data.data:
            answer = client.explain(features=dict(zip(IRIS, map(float, row), strict=True)))
            assert answer.kind == "features" and [p.name for p in answer.parts] == IRIS
            weights.append([p.weight for p in answer.parts])
    size = np.abs(np.array(weights)).mean(0)
    assert min(size[2:]) > 2 * max(size[:2]), dict(zip(IRIS, size, strict=True))


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Silero VAD exported by the CLI, served."""
    work = tmp_path_factory.mktemp("speech")
    run_cli("export", "silero-vad", "--repository", "models", "--name", "speech", cwd=work)
    folder = work / "models" / "speech"
    server: RunningProcess = start_server("speech", folder, work / "server.log")
    try:
        yield f"127.0.0.1:{server.match.group(1)}"
    finally:
        assert server.stop() == 0, server.output()


def test_the_speech_windows_carry_the_weight_for_speech(speech: str, tmp_path: Path) -> None:
    spoken, rate = soundfile.read(espeak(GERMAN, "de", tmp_path / "de.wav"), dtype="float32")
    silence = np.zeros(int(1.5 * rate), dtype=np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate([silence, spoken, silence]), rate, format="WAV")
    begins, ends = 1.5, 1.5 + len(spoken) / rate
    with Client(speech) as client:
        answer = client.explain(buffer.getvalue(), class_name="speech")
    assert answer.kind == "audio" and answer.explained.score > 0.5
    inside = np.array([p.end > begins and p.start < ends for p in answer.parts])
    weights = np.array([p.weight for p in answer.parts])
    positive = np.clip(weights, 0, None)
    assert positive[inside].sum() >= MIN_SHARE * positive.sum(), weights
    assert weights[inside].mean() > 5 * max(weights[~inside].max(), 0.01), weights
