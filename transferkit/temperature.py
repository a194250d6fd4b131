"""Temperature scaling kept in the model itself: the kernel and bias of the Dense layer whose softmax is the
model's output, divided by ``T``. ``softmax(x @ (W / T) + b / T)`` is ``softmax(logits / T)``, so the saved
model and every export made from it answer calibrated probabilities with no new layer (a ``.keras`` file
still loads in plain Keras).

Example:
    >>> block, val_p, test_p = calibrate(model, (val_labels, val_p), (test_labels, test_p), predict_first)
    >>> block["temperature"], block["ece_test_before"], block["ece_test"]
    (1.74, 0.118, 0.035)
"""
import keras
import numpy as np

from transferkit.calibration import (SEARCH, accepted, expected_calibration_error, fit_temperature, rejection_threshold,
                                     scaled)

KEEP = 0.95  # of the correctly classified validation images, the fraction the rejection threshold accepts
PARITY = 1e-5  # the folded model's probabilities against scaled(before, T), on the first test images


def _from_output(model):
    """The layers of ``model`` from its output back, nested models opened, input layers left out. The first two
    are the output's layer and the one feeding it: in a functional model of one output, the layer making the
    output is the only one at depth 0, last in ``model.layers``, and its input's maker the only one at depth 1."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            yield from _from_output(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _is_softmax(layer):
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(layer, "activation", None) is keras.activations.softmax


def softmax_dense(model):
    """``(layer, None)``: the Dense layer whose softmax is ``model``'s output, inside nested models too, and
    through a final ``Activation("softmax")`` after a linear Dense; or ``(None, why)`` if there is none.

    Example:
        >>> softmax_dense(model)
        (<Dense name=predictions, built=True>, None)
    """
    layers = _from_output(model)
    last = next(layers, None)
    if not _is_softmax(last):
        return None, f"the model's output is not a softmax (its last layer is {type(last).__name__})"
    if isinstance(last, keras.layers.Dense):
        return last, None
    before = next(layers, None)
    if isinstance(before, keras.layers.Dense) and before.activation is keras.activations.linear:
        return before, None
    return None, f"the softmax is not over a linear Dense layer (it is over {type(before).__name__})"


def fold_temperature(dense, temperature):
    """Divide ``dense``'s kernel and bias by ``temperature``: its softmax becomes ``softmax(logits / T)``.

    Example:
        >>> layer, _ = softmax_dense(model)
        >>> fold_temperature(layer, 1.5)
    """
    dense.set_weights([weight / temperature for weight in dense.get_weights()])


def _summary(val, test, temperature, val_after, test_after, why=None):
    threshold = rejection_threshold(val[0], val_after, KEEP)
    right = val_after.argmax(axis=1) == val[0]
    block = {
        "temperature": temperature,
        "ece_val_before": expected_calibration_error(*val),
        "ece_val": expected_calibration_error(val[0], val_after),
        "ece_test_before": expected_calibration_error(*test),
        "ece_test": expected_calibration_error(test[0], test_after),
        "reject_threshold": threshold,
        "threshold_keeps": None if threshold is None else float(accepted(val_after[right], threshold).mean()),
    }
    return {**block, "not_calibrated": why} if why else block


def _uncalibrated(val, test, why):
    return _summary(val, test, None, val[1], test[1], why), val[1], test[1]


def calibrate(model, val, test, predict_first, enabled=True):
    """Fit a temperature on ``val`` (labels, probabilities), fold it into ``model``'s softmax Dense layer and
    check the fold: ``predict_first()`` (the folded model's probabilities on the first images of ``test``, one
    batch is enough) must equal ``scaled`` of theirs to 1e-5; otherwise the weights go back. The test split is
    not predicted again: its calibrated probabilities are ``scaled(test probabilities, T)``.

    Returns ``(block, val probabilities, test probabilities)``: the ``calibration`` block of ``metrics.json``
    (the temperature, the expected calibration error before and after on both splits, the rejection threshold
    that keeps 95% of the correct validation images and the fraction it keeps) and the model's probabilities
    from now on. Not
    calibrated (``enabled`` False, no softmax Dense layer, a best temperature at the search's bound, which a
    validation split without a wrong answer gives, or a failed check): the temperature is None,
    ``not_calibrated`` says why, and the threshold is the uncalibrated model's.

    Example:
        >>> block, val_p, test_p = calibrate(model, val, test, lambda: predict_split(model, test_batches.take(1))[1])
    """
    dense, why = softmax_dense(model) if enabled else (None, "calibrate: false in the recipe")
    if dense is None:
        return _uncalibrated(val, test, why)
    temperature = fit_temperature(*val)
    if not SEARCH[0] * 1.001 < temperature < SEARCH[1] / 1.001:  # e.g. every validation image right: T -> 0
        wrong = int(np.sum(val[1].argmax(axis=1) != val[0]))
        why = (f"the validation split pins no temperature down: the best is the search's bound {temperature:.3g} "
               f"({wrong} of {len(val[0])} validation images wrong)")
        return _uncalibrated(val, test, why)
    weights = dense.get_weights()
    fold_temperature(dense, temperature)
    answered = predict_first()
    gap = float(np.max(np.abs(answered - scaled(test[1][:len(answered)], temperature))))
    if gap > PARITY:
        dense.set_weights(weights)
        why = f"folding T = {temperature:.4g} into layer '{dense.name}' gave probabilities {gap:.2g} from softmax(log p / T)"
        return _uncalibrated(val, test, why)
    # equal to the folded model's, as the first test images just showed; the top class of each is unchanged
    val_after, test_after = scaled(val[1], temperature), scaled(test[1], temperature)
    return _summary(val, test, temperature, val_after, test_after), val_after, test_after
