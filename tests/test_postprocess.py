import numpy as np
import pytest

from pyserving.postprocess import softmax, top_k

LABELS = ["a", "b", "c", "d"]


def test_softmax_is_stable_and_sums_to_one() -> None:
    probs = softmax(np.array([1000.0, 1000.0, -1000.0], dtype=np.float32))
    assert probs == pytest.approx([0.5, 0.5, 0.0])


def test_top_k_from_logits_best_first() -> None:
    preds = top_k(np.array([0.1, 3.0, -1.0, 2.0], dtype=np.float32), LABELS, 3, logits=True)
    assert [p.name for p in preds] == ["b", "d", "a"]
    assert [p.index for p in preds] == [1, 3, 0]
    assert preds[0].score > preds[1].score > preds[2].score
    assert sum(softmax(np.array([0.1, 3.0, -1.0, 2.0]))) == pytest.approx(1.0)


def test_top_k_of_probabilities_keeps_them() -> None:
    preds = top_k(np.array([0.1, 0.6, 0.3, 0.0]), LABELS, 2, logits=False)
    assert [(p.name, round(p.score, 6)) for p in preds] == [("b", 0.6), ("c", 0.3)]


@pytest.mark.parametrize(("k", "expected"), [(10, 4), (4, 4), (1, 1)])
def test_k_is_clamped_to_the_classes(k: int, expected: int) -> None:
    assert len(top_k(np.array([1.0, 2.0, 3.0, 4.0]), LABELS, k, logits=True)) == expected
