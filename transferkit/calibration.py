"""Are the probabilities honest? Expected calibration error, temperature scaling and a rejection threshold.

A model is calibrated when, of the images it answers with probability 0.8, 80% are right. Small data makes
overconfident networks (Guo et al. 2017, "On Calibration of Modern Neural Networks"); one temperature ``T``
fitted on the validation split, ``softmax(logits / T)``, fixes most of it without changing any answer. The
threshold answers "unknown" for images whose top probability is low: Hendrycks and Gimpel's (2017) max-softmax
baseline for inputs from outside the classes, chosen on the validation split.

Example:
    >>> T = fit_temperature(val_labels, val_probabilities)
    >>> expected_calibration_error(test_labels, scaled(test_probabilities, T))
    0.031
"""
import numpy as np

from transferkit.errors import TransferkitError

# the floor under probabilities before their log: the smallest normal float32, below all but a softmax underflow
TINY = float(np.finfo(np.float32).tiny)
SEARCH = (0.05, 20.0)  # the temperatures fit_temperature searches


def _checked(labels, probabilities):
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or len(labels) != len(probabilities) or not len(labels):
        raise TransferkitError(f"calibration needs labels (N,) and probabilities (N, classes) with N > 0; got "
                               f"{labels.shape} and {probabilities.shape}")
    return labels.astype(np.int64), probabilities


def expected_calibration_error(labels, probabilities, bins=15):
    """The expected calibration error: in equal-width bins of the top probability (confidence) over [0, 1],
    the gap between the bin's accuracy and its mean confidence, weighted by the images in the bin.

    0 is perfectly calibrated; an overconfident model scores about its confidence minus its accuracy.

    Example:
        >>> expected_calibration_error([0, 1, 1], [[.9, .1], [.8, .2], [.3, .7]])   # one image a bin
        0.4
        >>> (abs(1 - .9) + abs(0 - .8) + abs(1 - .7)) / 3   # |accuracy - confidence| of each bin, by its images
        0.4
    """
    labels, probabilities = _checked(labels, probabilities)
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # bins (i/B, (i+1)/B]
    gaps = [abs(right[which == b].sum() - confidence[which == b].sum()) for b in np.unique(which)]
    return float(np.sum(gaps) / len(labels))


def scaled(probabilities, temperature):
    """``softmax(log(probabilities) / temperature)``, row by row: what the model gives with its logits divided by
    ``temperature`` (a softmax's log is its logits up to a constant per row). Above 1 softens, below 1 sharpens;
    the top class never changes.

    Example:
        >>> scaled([[0.8, 0.2]], 2.0).round(4)   # sqrt(0.8) : sqrt(0.2)
        array([[0.6667, 0.3333]])
    """
    if not temperature > 0:
        raise TransferkitError(f"a temperature must be > 0; got {temperature}")
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), TINY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def _nll(labels, log_probabilities, temperature):
    logits = log_probabilities / temperature
    top = logits.max(axis=1)
    log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(len(labels)), labels]))


def fit_temperature(labels, probabilities, bounds=SEARCH, tolerance=1e-4):
    """The temperature ``T`` in ``bounds`` that minimises the log loss of ``scaled(probabilities, T)`` on
    ``labels`` (temperature scaling, fitted on the validation split): a golden-section search on ``log T``,
    exact to ``tolerance`` in ``log T``. The loss is convex in ``1 / T``, so the search finds its one minimum.

    Example:
        >>> fit_temperature(val_labels, val_probabilities)   # an overconfident model: T > 1 softens it
        1.83
    """
    labels, probabilities = _checked(labels, probabilities)
    log_probabilities = np.log(np.clip(probabilities, TINY, 1.0))
    low, high = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = (_nll(labels, log_probabilities, np.exp(x)) for x in (a, b))
    while high - low > tolerance:
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = _nll(labels, log_probabilities, np.exp(a))
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = _nll(labels, log_probabilities, np.exp(b))
    return float(np.exp((low + high) / 2))


def rejection_threshold(labels, probabilities, keep=0.95):
    """The highest top-probability threshold that still accepts (top probability >= threshold) at least ``keep``
    of the correctly classified images; below it, an image is answered "unknown". Chosen on the validation
    split; None if no image there is classified correctly.

    Example:
        >>> rejection_threshold([0, 0, 1, 1], [[.9, .1], [.6, .4], [.3, .7], [.45, .55]], keep=0.5)
        0.7
        >>> # all four are right, with top probabilities .9, .6, .7, .55: 0.7 accepts two of them
    """
    if not 0 < keep <= 1:
        raise TransferkitError(f"keep is the fraction of correct images to accept, in (0, 1]; got {keep}")
    labels, probabilities = _checked(labels, probabilities)
    right = probabilities.argmax(axis=1) == labels
    confidences = np.sort(probabilities.max(axis=1)[right])[::-1]
    if not len(confidences):
        return None
    kept = int(np.ceil(keep * len(confidences) - 1e-9))  # at least keep of them: 95% of 20 is 19, of 21 is 20
    return float(confidences[kept - 1])


def accepted(probabilities, threshold):
    """True for each row of ``probabilities`` whose top probability reaches ``threshold`` (the others are
    "unknown").

    Example:
        >>> accepted([[.9, .1], [.55, .45]], 0.7)
        array([ True, False])
    """
    return np.atleast_2d(np.asarray(probabilities, np.float64)).max(axis=1) >= threshold
