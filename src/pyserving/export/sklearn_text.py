"""scikit-learn text pipelines → ONNX: which vectorizer settings convert, and how.

A text pipeline's first step is a `CountVectorizer` or `TfidfVectorizer`; skl2onnx turns
it into a graph taking a string tensor [N, 1]. Some settings do not convert, or convert
into a graph that answers differently: those are refused here, each saying why, before
anything is written. The rest get the converter options that make the graph agree with
scikit-learn (found by comparing the two on real text in 14 languages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pyserving.errors import ExportError

SAMPLE_TEXTS = 64
# scikit-learn's default token_pattern, `(?u)\b\w\w+\b`, as ONNX Runtime's re2 says it; the
# converter's own default is ASCII only and splits "Grüße" in two.
WORD_TOKENS = r"[\pL\pN_][\pL\pN_]+"
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# The graph lowercases with a named locale; skl2onnx's default, en_US.UTF-8, is missing on
# many servers (and in slim containers), and ONNX Runtime then cannot load the model at all.
LOCALE = "C.UTF-8"


def vectorizer(model: Any, whitespace: str = "collapse") -> Any:
    """The pipeline's first step, checked to be a vectorizer that converts correctly for a
    server that normalises whitespace as `whitespace` says.

    Raises ExportError naming each setting that does not, and why.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    steps = getattr(model, "steps", None)
    first = steps[0][1] if steps else None
    if not isinstance(first, CountVectorizer):  # TfidfVectorizer is a CountVectorizer
        raise ExportError(
            f"--input text takes a fitted Pipeline whose first step is a CountVectorizer or "
            f"TfidfVectorizer; got {type(first or model).__name__}"
        )
    problems = []
    if first.analyzer == "char_wb":
        problems.append(
            "analyzer='char_wb' does not convert (skl2onnx has no word-bounded character "
            "n-grams); use analyzer='char'"
        )
    elif first.analyzer not in ("char", "word"):
        problems.append("a callable analyzer cannot be converted; use 'char' or 'word'")
    if first.analyzer == "char" and whitespace != "collapse":
        problems.append(
            f"whitespace {whitespace!r} with analyzer='char' would answer differently: "
            "scikit-learn collapses runs of whitespace inside the analyzer and the converted "
            "graph does not; export with whitespace 'collapse'"
        )
    if getattr(first, "sublinear_tf", False):
        problems.append(
            "sublinear_tf=True converts wrongly (probabilities off by up to 0.03); "
            "train with sublinear_tf=False"
        )
    for option in ("tokenizer", "preprocessor"):
        if getattr(first, option) is not None:
            problems.append(f"a custom {option} is Python code and cannot be converted")
    if first.strip_accents is not None:
        problems.append("strip_accents does not convert; train with strip_accents=None")
    if first.analyzer == "word" and first.token_pattern != DEFAULT_TOKEN_PATTERN:
        problems.append(
            f"token_pattern {first.token_pattern!r} cannot be carried over; only the default "
            f"{DEFAULT_TOKEN_PATTERN!r} converts (as {WORD_TOKENS})"
        )
    if problems:
        raise ExportError(f"cannot export {type(first).__name__}: " + "; ".join(problems))
    return first


def converter_options(step: Any) -> dict[str, Any]:
    """The skl2onnx options that make the vectorizer's graph agree with scikit-learn."""
    options: dict[str, Any] = {}
    if step.lowercase:
        options["locale"] = LOCALE
    if step.analyzer == "word":
        options["tokenexp"] = WORD_TOKENS
    return options


def sample_texts(step: Any, count: int = SAMPLE_TEXTS, seed: int = 0) -> list[str]:
    """Texts made of the vectorizer's own vocabulary, to verify on when none are given."""
    vocabulary = sorted(step.vocabulary_)
    rng = np.random.default_rng(seed)
    joiner = " " if step.analyzer == "word" else ""
    texts = []
    for _ in range(count):
        picked = rng.choice(len(vocabulary), size=min(len(vocabulary), 12), replace=False)
        texts.append(joiner.join(vocabulary[int(i)] for i in picked))
    return texts


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts to verify on: a non-empty list of non-empty strings."""
    out = [t for t in texts]
    if not out or not all(isinstance(t, str) and t.strip() for t in out):
        raise ExportError("samples for a text model must be non-empty strings, at least one")
    return out
