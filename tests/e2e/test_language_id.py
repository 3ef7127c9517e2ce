"""The 14-language identifier, trained here from Debian's man pages, served and checked.

Every held-out sentence is classified over gRPC (the seed's client), OIP v2 REST and TF
Serving REST, and must get scikit-learn's answer, with its probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from examples import train_language_id as lid
from pyserving.signature import LABELS_FILE
from tests.manpages import manpage_corpus
from tests.processes import RunningProcess, free_port, start_server
from tests.seed_client import seed_classify

MIN_ACCURACY = 0.97  # measured: 98.4% of 2,800 held-out sentences
CHUNK = 100  # sentences per REST request (the default queue holds 128)


@dataclass(frozen=True)
class Served:
    """The trained pipeline, its held-out set, and the server serving its export."""

    model: Any
    corpus: lid.Corpus
    labels: list[str]
    grpc_address: str
    rest_url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("language")
    corpus = manpage_corpus(workdir)
    assert set(corpus.held_out_labels) == set(lid.LANGUAGES), "a language has no sentences"
    model = lid.train(corpus, workdir / "language.joblib")
    version = lid.export(workdir / "language.joblib", corpus.held_out[:300], workdir)
    labels = (version / LABELS_FILE).read_text(encoding="utf-8").splitlines()
    port = free_port()
    server: RunningProcess = start_server(
        "language", version.parent, workdir / "server.log", "--rest_api_port", str(port)
    )
    try:
        yield Served(
            model, corpus, labels, f"127.0.0.1:{server.match.group(1)}", f"http://127.0.0.1:{port}"
        )
    finally:
        assert server.stop() == 0, server.output()


def test_scikit_learn_identifies_held_out_pages(served: Served) -> None:
    accuracy = lid.accuracy(served.model, served.corpus)
    assert accuracy >= MIN_ACCURACY, f"held-out accuracy {accuracy:.1%}"
    assert served.labels == list(served.model.classes_)


def test_the_seeds_client_gets_scikit_learns_answer(served: Served, tmp_path: Path) -> None:
    texts = served.corpus.held_out
    replies = seed_classify(served.grpc_address, [t.encode() for t in texts], tmp_path)
    expected = served.model.predict_proba(texts)
    classes = list(served.model.classes_)
    assert len(replies) == len(texts)
    for text, reply, probs in zip(texts, replies, expected, strict=True):
        name, score = reply[0]
        assert name == classes[int(np.argmax(probs))], text
        assert score == pytest.approx(float(probs.max()), abs=1e-5), text


def test_oip_v2_rest_gets_scikit_learns_probabilities(served: Served) -> None:
    texts = served.corpus.held_out
    with httpx.Client(base_url=served.rest_url, timeout=60) as http:
        (model_input,) = http.get("/v2/models/language").json()["inputs"]
        assert model_input["datatype"] == "BYTES"
        rows = []
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            tensor = {**model_input, "shape": [len(chunk)], "data": chunk}
            answer = http.post("/v2/models/language/infer", json={"inputs": [tensor]})
            assert answer.status_code == 200, answer.text
            (output,) = answer.json()["outputs"]
            assert output["shape"] == [len(chunk), len(served.labels)]
            rows.append(np.array(output["data"]).reshape(output["shape"]))
    served_probs = np.concatenate(rows)
    np.testing.assert_allclose(served_probs, served.model.predict_proba(texts), atol=1e-5)
    assert list(np.argmax(served_probs, axis=1)) == list(
        np.argmax(served.model.predict_proba(texts), axis=1)
    )


def test_tf_serving_rest_predict_and_classify(served: Served) -> None:
    texts = served.corpus.held_out
    expected = served.model.predict(texts)
    predicted, classified = [], []
    with httpx.Client(base_url=served.rest_url, timeout=60) as http:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            answer = http.post("/v1/models/language:predict", json={"instances": chunk})
            assert answer.status_code == 200, answer.text
            predicted += [served.labels[int(np.argmax(p))] for p in answer.json()["predictions"]]
            examples = [{"text": t} for t in chunk]
            answer = http.post("/v1/models/language:classify", json={"examples": examples})
            assert answer.status_code == 200, answer.text
            classified += [result[0][0] for result in answer.json()["results"]]
    assert predicted == list(expected)
    assert classified == list(expected)
