"""Top losses and the most confused pairs, checked against the evaluation's own confusion matrix."""
import numpy as np
import pytest

from transferkit.evaluation import classification_report
from transferkit.inspection import losses, most_confused, top_losses


def _answers(n=200, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes))
    return rng.integers(0, classes, n), np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_top_losses_are_the_images_least_sure_of_their_true_class():
    labels, probabilities = _answers()
    worst = top_losses(labels, probabilities, top=5)
    p_true = probabilities[np.arange(len(labels)), labels]
    assert set(worst) == set(np.argsort(p_true)[:5])
    assert np.all(np.diff(losses(labels, probabilities)[worst]) <= 0)
    report = classification_report(labels, probabilities, list("abcd"))
    assert losses(labels, probabilities).mean() == pytest.approx(report["loss"])


def test_most_confused_lists_every_off_diagonal_cell_of_the_confusion_matrix_most_first():
    labels, probabilities = _answers(seed=1)
    names = ["cat", "dog", "fox", "owl"]
    matrix = np.array(classification_report(labels, probabilities, names)["confusion_matrix"])
    pairs = most_confused(labels, probabilities, names)
    assert {(a, p): n for a, p, n in pairs} == {(names[i], names[j]): matrix[i, j] for i in range(4) for j in range(4)
                                                 if i != j and matrix[i, j]}
    assert [n for _, _, n in pairs] == sorted((n for _, _, n in pairs), reverse=True)
    assert all(n >= 3 for _, _, n in most_confused(labels, probabilities, names, min_count=3))
