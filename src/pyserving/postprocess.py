"""Turn a row of scores into the top-K classes. Plain synchronous functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pyserving.results import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


def top_k(
    scores: np.ndarray, labels: Sequence[str], k: int, logits: bool
) -> tuple[Prediction, ...]:
    """The `k` best classes of one row of `scores`, best first, as probabilities."""
    probs = softmax(scores) if logits else scores.astype(np.float64)
    k = max(1, min(k, probs.shape[-1]))
    best = np.argpartition(-probs, k - 1)[:k] if k < probs.shape[-1] else np.arange(k)
    best = best[np.argsort(-probs[best], kind="stable")]
    return tuple(Prediction(labels[i], float(probs[i]), int(i)) for i in best)
