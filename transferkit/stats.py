"""Is a difference in accuracy noise? The Wilson interval of one accuracy, and the exact McNemar test between two
runs' answers on the same test images.

Example:
    >>> a, b = load_predictions(run_a), load_predictions(run_b)
    >>> low, high = wilson_interval(*right_of(a))
    >>> p_value = mcnemar_exact(*discordant(a, b))
"""
import math
from statistics import NormalDist

import numpy as np

from transferkit.errors import TransferkitError

Z95 = NormalDist().inv_cdf(0.975)  # 1.95996...: two-sided 95%


def wilson_interval(k, n, z=Z95):
    """The Wilson score interval ``(low, high)`` of an accuracy of ``k`` right out of ``n`` (95% by default).

    Unlike ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and keeps a width at 0 or n right.

    Example:
        >>> [round(x, 4) for x in wilson_interval(81, 100)]
        [0.7222, 0.8749]
    """
    if not 0 <= k <= n or n == 0:
        raise TransferkitError(f"an accuracy needs 0 <= right <= images and images > 0; got {k} of {n}")
    p, z2 = k / n, z * z
    scale = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b, c):
    """The two-sided p-value of the exact McNemar test: ``b`` images only the first run got right, ``c`` only the
    second. If the runs were equally good, each of the ``b + c`` discordant images would go either way with
    probability 1/2; the p-value is the chance of a split at least as lopsided (binomial, both tails).

    Example:
        >>> round(mcnemar_exact(10, 2), 4)  # 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12 = 158 / 4096
        0.0386
    """
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def right_of(predictions):
    """``(k, n)``: test images the run's top class got right, and test images, from its ``predictions.npz``.

    Example:
        >>> right_of(load_predictions("runs/demo-finetune-20261123-171500"))
        (207, 300)
    """
    correct = _correct(predictions)
    return int(correct.sum()), len(correct)


def discordant(first, second):
    """``(b, c)``: test images only ``first`` got right and only ``second`` got right (two runs'
    :func:`~transferkit.runs.load_predictions`). Runs on different test sets cannot be paired: a one-line error.

    Example:
        >>> discordant(load_predictions(run_a), load_predictions(run_b))
        (10, 2)
    """
    labels, other = first["test_labels"], second["test_labels"]
    if labels.shape != other.shape:
        raise TransferkitError(f"different test sets ({len(labels)} and {len(other)} images): cannot be paired")
    if not np.array_equal(labels, other):
        raise TransferkitError(f"different test sets (the labels of {int(np.sum(labels != other))} of "
                               f"{len(labels)} images differ): cannot be paired")
    a, b = _correct(first), _correct(second)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def _correct(predictions):
    return predictions["test_probabilities"].argmax(axis=1) == predictions["test_labels"]
