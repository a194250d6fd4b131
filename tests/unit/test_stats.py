"""stats: Wilson intervals and the exact McNemar test, against hand-computed values and scipy where it is installed."""
import numpy as np
import pytest

from transferkit.errors import TransferkitError
from transferkit.stats import Z95, discordant, mcnemar_exact, right_of, wilson_interval


def test_wilson_interval_of_81_in_100_matches_the_formula_worked_by_hand():
    # p = 0.81, z^2 = 3.8415: centre (0.81 + 0.019207) / 1.038415 = 0.798538,
    # half 1.959964 / 1.038415 * sqrt(0.001539 + 0.00009604) = 0.076321
    low, high = wilson_interval(81, 100)
    assert low == pytest.approx(0.72221, abs=1e-5) and high == pytest.approx(0.87485, abs=1e-5)
    assert Z95 == pytest.approx(1.959964, abs=1e-6)


def test_wilson_interval_stays_in_zero_one_keeps_a_width_and_narrows_with_more_images():
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.27753, abs=1e-5)  # z^2 / (n + z^2)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1, abs=1e-12) and low == pytest.approx(1 - 0.27753, abs=1e-5)
    widths = [high - low for low, high in (wilson_interval(n // 2, n) for n in (10, 100, 1000))]
    assert widths[0] > widths[1] > widths[2] > 0
    for k, n in ((3, 40), (20, 40), (39, 40)):
        low, high = wilson_interval(k, n)
        assert low < k / n < high


@pytest.mark.parametrize("k, n", [(0, 0), (5, 4), (-1, 10)])
def test_wilson_interval_refuses_counts_that_are_not_an_accuracy(k, n):
    with pytest.raises(TransferkitError, match="an accuracy needs"):
        wilson_interval(k, n)


def test_mcnemar_exact_matches_the_binomial_sums_worked_by_hand():
    assert mcnemar_exact(10, 2) == 2 * (1 + 12 + 66) / 4096  # 0.0386
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0  # no evidence either way
    assert mcnemar_exact(0, 6) == pytest.approx(0.03125) and mcnemar_exact(0, 5) > 0.05  # 6-0 is the least
    assert mcnemar_exact(300, 200) == pytest.approx(8.94e-6, rel=1e-3)  # large counts: exact integers, no overflow


def test_wilson_and_mcnemar_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in ((81, 100), (3, 40), (0, 7), (299, 300)):
        expected = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-12)
    for b in range(0, 25, 3):
        for c in range(0, 25, 4):
            if b + c:
                assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c).pvalue, rel=1e-9)


def answers(labels, predicted, classes=3):
    """predictions.npz-like arrays: one-hot-ish probabilities whose top class is ``predicted``."""
    probabilities = np.full((len(labels), classes), 0.1, np.float32)
    probabilities[np.arange(len(labels)), predicted] = 0.8
    return {"test_labels": np.asarray(labels, np.int32), "test_probabilities": probabilities}


def test_right_of_and_discordant_count_from_the_top_class():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    first = answers(labels, [0, 1, 2, 0, 1, 2, 1, 2])   # right on 0-5
    second = answers(labels, [0, 2, 2, 1, 1, 2, 0, 2])  # right on 0, 2, 4, 5, 6
    assert right_of(first) == (6, 8) and right_of(second) == (5, 8)
    assert discordant(first, second) == (2, 1)  # images 1 and 3 only first, image 6 only second
    assert discordant(second, first) == (1, 2)
    assert mcnemar_exact(*discordant(first, second)) == 1.0
    assert discordant(first, first) == (0, 0)


def test_discordant_refuses_runs_on_different_test_sets():
    labels = np.array([0, 1, 2, 0])
    with pytest.raises(TransferkitError, match=r"^different test sets \(4 and 3 images\): cannot be paired$"):
        discordant(answers(labels, labels), answers(labels[:3], labels[:3]))
    with pytest.raises(TransferkitError, match=r"the labels of 2 of 4 images differ"):
        discordant(answers(labels, labels), answers(labels[::-1], labels[::-1]))
