"""scikit-learn text pipelines → servable: what converts, what is refused and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from pyserving.errors import ExportError
from pyserving.export import export_sklearn
from pyserving.kinds import load_signature
from pyserving.kinds.text import TextFields
from pyserving.reference import load_reference
from pyserving.signature import list_versions

TEXTS = [
    "Guten Tag, wie geht es Ihnen heute?",
    "Straße und Grüße aus München",
    "Bonjour, comment allez-vous ce matin ?",
    "Ça va très bien, merci beaucoup",
    "Привет, как у тебя дела сегодня?",
    "Это очень хорошая погода",
    "Dobrý den, jak se máte?",
    "Žluťoučký kůň úpěl ďábelské ódy",
]
LANGUAGES = ["de", "de", "fr", "fr", "ru", "ru", "cs", "cs"]


def fitted(vectorizer: Any) -> Any:
    return make_pipeline(vectorizer, LogisticRegression(C=10, max_iter=1000)).fit(TEXTS, LANGUAGES)


def onnx_probabilities(version: Path, texts: list[str]) -> np.ndarray:
    session = ort.InferenceSession(str(version / "model.onnx"))
    (out,) = session.run(["probabilities"], {"text": np.array(texts).reshape(-1, 1)})
    return np.asarray(out)


@pytest.mark.parametrize(
    "vectorizer",
    [
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False),
        TfidfVectorizer(analyzer="char", ngram_range=(1, 2)),  # lowercase: needs C.UTF-8
        CountVectorizer(analyzer="word"),  # non-ASCII words: needs the Unicode tokenexp
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), lowercase=False),
    ],
    ids=["char", "char-lowercase", "word", "word-bigrams"],
)
def test_text_pipelines_match_predict_proba(tmp_path: Path, vectorizer: Any) -> None:
    model = fitted(vectorizer)
    version = export_sklearn(model, tmp_path, "lang", input="text", samples=TEXTS)
    sig = load_signature(version)
    assert (sig.kind, sig.input_name, sig.input_dtype, sig.fields) == (
        "text",
        "text",
        "string",
        TextFields("collapse"),
    )
    assert sig.labels == ("cs", "de", "fr", "ru")
    ours = onnx_probabilities(version, TEXTS)
    assert np.max(np.abs(ours - model.predict_proba(TEXTS))) < 1e-5
    reference = load_reference(version)
    assert reference is not None and reference.inputs.shape == (len(TEXTS), 1)


def test_own_samples_come_from_the_vocabulary_and_whitespace_is_kept_if_asked(
    tmp_path: Path,
) -> None:
    chars = fitted(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), lowercase=False))
    version = export_sklearn(chars, tmp_path, "chars", input="text")
    reference = load_reference(version)
    assert reference is not None and len(reference.inputs) == 64
    words = fitted(CountVectorizer(analyzer="word"))
    version = export_sklearn(words, tmp_path, "words", input="text", whitespace="keep")
    assert load_signature(version).fields == TextFields("keep")
    with pytest.raises(ExportError, match="scikit-learn collapses runs of whitespace"):
        export_sklearn(chars, tmp_path, "chars", input="text", whitespace="keep")


@pytest.mark.parametrize(
    ("vectorizer", "message"),
    [
        (TfidfVectorizer(analyzer="char_wb"), "analyzer='char_wb' does not convert"),
        (
            TfidfVectorizer(analyzer="char", sublinear_tf=True),
            "sublinear_tf=True converts wrongly",
        ),
        (TfidfVectorizer(strip_accents="unicode"), "strip_accents does not convert"),
        (CountVectorizer(token_pattern=r"\w+"), r"token_pattern '\\\\w\+' cannot be carried over"),
        (CountVectorizer(tokenizer=str.split), "a custom tokenizer is Python code"),
    ],
)
def test_options_that_do_not_convert_are_refused_saying_why(
    tmp_path: Path, vectorizer: Any, message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        export_sklearn(fitted(vectorizer), tmp_path, "lang", input="text", samples=TEXTS)
    assert list_versions(tmp_path / "lang") == []


def test_a_model_without_a_vectorizer_is_refused(tmp_path: Path) -> None:
    model = LogisticRegression().fit(np.eye(2), [0, 1])
    with pytest.raises(ExportError, match="first step is a CountVectorizer or TfidfVectorizer"):
        export_sklearn(model, tmp_path, "lang", input="text")
    with pytest.raises(ExportError, match="unknown input 'audio'"):
        export_sklearn(model, tmp_path, "lang", input="audio")


def test_the_command_line_exports_text(tmp_path: Path) -> None:
    model_file = tmp_path / "lang.joblib"
    joblib.dump(fitted(TfidfVectorizer(analyzer="char", lowercase=False)), model_file)
    samples = tmp_path / "samples.txt"
    samples.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyserving",
            "export",
            "sklearn",
            str(model_file),
            "--input",
            "text",
            "--labels",
            "Czech,German,French,Russian",
            "--samples",
            str(samples),
            "--repository",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    version = Path(result.stdout.strip().splitlines()[-1])
    assert load_signature(version).labels == ("Czech", "German", "French", "Russian")
    assert (
        "verifying ONNX Runtime against scikit-learn on 8 inputs" in result.stderr + result.stdout
    )
