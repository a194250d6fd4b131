"""calibration and temperature: ECE, temperature scaling on synthetic models whose calibration is known, the
rejection threshold, and the temperature folded into a Keras model's softmax Dense layer."""
import keras
import numpy as np
import pytest

from transferkit.calibration import (accepted, expected_calibration_error, fit_temperature, rejection_threshold,
                                     scaled)
from transferkit.errors import TransferkitError
from transferkit.temperature import calibrate, fold_temperature, softmax_dense


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _honest(n=20000, classes=5, seed=0):
    """Logits, their softmax and labels drawn from it: a model calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, classes))
    truth = _softmax(logits)
    labels = (truth.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return logits, truth, labels


def test_ece_is_near_zero_for_a_calibrated_model_and_large_for_an_overconfident_one():
    logits, truth, labels = _honest()
    assert expected_calibration_error(labels, truth) < 0.02  # what 20,000 draws leave in 15 bins
    overconfident = _softmax(logits * 4)  # same answers, logits four times too large
    confidence = overconfident.max(axis=1).mean()
    accuracy = np.mean(overconfident.argmax(axis=1) == labels)
    assert expected_calibration_error(labels, overconfident) > 0.15
    assert expected_calibration_error(labels, overconfident) == pytest.approx(confidence - accuracy, abs=0.02)


def test_ece_by_hand_and_each_image_in_one_bin():
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), each alone in its bin: (0.1 + 0.8 + 0.3) / 3
    assert expected_calibration_error([0, 1, 1], [[.9, .1], [.8, .2], [.3, .7]]) == pytest.approx(0.4)
    # one bin (0.6, 0.7] of 10 holds 0.65 (right) and 0.68 (wrong): |1 right - 1.33 confidence| / 2 images
    assert expected_calibration_error([0, 1], [[.65, .35], [.68, .32]], bins=10) == pytest.approx(0.33 / 2)
    assert expected_calibration_error([1], [[0.0, 1.0]]) == 0.0  # confidence 1 falls in the last bin


@pytest.mark.parametrize("t0", [0.5, 2.0, 4.0])
def test_fit_temperature_recovers_the_factor_the_logits_were_scaled_by(t0):
    logits, _, labels = _honest()
    model = _softmax(logits * t0)  # a model whose logits are t0 times the true ones: dividing by t0 undoes it
    fitted = fit_temperature(labels, model)
    assert fitted == pytest.approx(t0, rel=0.05)
    assert expected_calibration_error(labels, scaled(model, fitted)) < 0.02
    assert np.array_equal(scaled(model, fitted).argmax(axis=1), model.argmax(axis=1))


def test_fit_temperature_stays_in_its_bounds_and_survives_zero_probabilities():
    # confident and always wrong: the loss falls as T grows, so T ends at the upper bound
    probabilities = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert fit_temperature([1, 0], probabilities) == pytest.approx(20.0, rel=1e-3)
    assert fit_temperature([0, 1], probabilities) == pytest.approx(0.05, rel=1e-3)  # always right: sharpen


def test_scaled_is_the_softmax_of_the_divided_logits():
    logits = np.random.default_rng(1).normal(0, 3, (50, 4))
    np.testing.assert_allclose(scaled(_softmax(logits), 2.5), _softmax(logits / 2.5), atol=1e-12)
    np.testing.assert_allclose(scaled([[0.8, 0.2]], 2.0), [[2 / 3, 1 / 3]])
    with pytest.raises(TransferkitError, match="temperature must be > 0"):
        scaled([[0.5, 0.5]], 0)


def test_rejection_threshold_keeps_95_percent_of_the_right_answers():
    logits, truth, labels = _honest(n=1000)
    threshold = rejection_threshold(labels, truth, keep=0.95)
    right = truth.argmax(axis=1) == labels
    kept = accepted(truth[right], threshold).mean()
    assert 0.95 <= kept < 0.95 + 2 / right.sum()  # at least 95%, and the highest threshold that keeps it
    assert accepted(truth[right], np.nextafter(threshold, 1)).mean() < 0.95
    assert rejection_threshold([0, 1], [[0.2, 0.8], [0.9, 0.1]]) is None  # nothing right to keep
    assert rejection_threshold([0, 0, 1, 1], [[.9, .1], [.6, .4], [.3, .7], [.45, .55]], keep=0.5) == 0.7
    with pytest.raises(TransferkitError, match="keep is the fraction"):
        rejection_threshold(labels, truth, keep=0)


def _nested(final):
    """A sequential model holding a functional head that ends with ``final`` (a list of layers)."""
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, activation="relu")(inputs)
    for layer in final:
        x = layer(x)
    head = keras.Model(inputs, x, name="head")
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(6), head]), head


@pytest.mark.parametrize("final", [
    lambda: [keras.layers.Dense(4, activation="softmax", name="out")],
    lambda: [keras.layers.Dense(4, name="out"), keras.layers.Activation("softmax")],
], ids=["dense-softmax", "activation-softmax"])
def test_the_folded_temperature_divides_the_logits_inside_nested_models(final):
    model, head = _nested(final())
    dense, why = softmax_dense(model)
    assert why is None and dense is head.get_layer("out")
    images = np.random.default_rng(2).normal(0, 3, (16, 3)).astype("float32")
    before = np.asarray(model.predict_on_batch(images), np.float64)
    fold_temperature(dense, 3.0)
    np.testing.assert_allclose(model.predict_on_batch(images), scaled(before, 3.0), atol=1e-6)


def test_a_model_without_a_softmax_dense_is_not_calibrated_and_says_why():
    relu, _ = _nested([keras.layers.Dense(4, activation="relu")])
    assert softmax_dense(relu) == (None, "the model's output is not a softmax (its last layer is Dense)")
    pooled, _ = _nested([keras.layers.Dense(4), keras.layers.Dropout(0.1), keras.layers.Activation("softmax")])
    assert softmax_dense(pooled)[1] == "the softmax is not over a linear Dense layer (it is over Dropout)"


def test_calibrate_folds_the_fitted_temperature_and_checks_it_on_the_test_split():
    model, head = _nested([keras.layers.Dense(3, activation="softmax", name="out")])
    rng = np.random.default_rng(3)
    x_val, x_test = rng.normal(0, 4, (200, 3)).astype("float32"), rng.normal(0, 4, (100, 3)).astype("float32")
    answer = lambda x: np.asarray(model.predict_on_batch(x), np.float64)  # noqa: E731
    val_p, test_p = answer(x_val), answer(x_test)
    # the model's answers, a third of them replaced by noise: an overconfident model, which T > 1 softens
    val_labels, test_labels = (np.where(rng.uniform(size=len(p)) < 1 / 3, rng.integers(0, 3, len(p)), p.argmax(1))
                               for p in (val_p, test_p))
    block, val_after, test_after = calibrate(model, (val_labels, val_p), (test_labels, test_p),
                                             lambda: answer(x_test))
    assert "not_calibrated" not in block and block["temperature"] > 1
    assert block["temperature"] == pytest.approx(fit_temperature(val_labels, val_p))
    np.testing.assert_allclose(answer(x_test), test_after, atol=1e-5)  # the parity calibrate checks
    np.testing.assert_allclose(answer(x_val), val_after, atol=1e-5)
    log_loss = lambda p: -np.mean(np.log(p[np.arange(len(val_labels)), val_labels]))  # noqa: E731
    assert log_loss(val_after) < log_loss(val_p)  # what the temperature minimises
    assert block["ece_test"] == pytest.approx(expected_calibration_error(test_labels, test_after))
    right = val_after.argmax(axis=1) == val_labels
    assert block["threshold_keeps"] == accepted(val_after[right], block["reject_threshold"]).mean() >= 0.95

    off, val_same, test_same = calibrate(model, (val_labels, val_after), (test_labels, test_after),
                                         lambda: answer(x_test), enabled=False)
    assert off["temperature"] is None and off["not_calibrated"] == "calibrate: false in the recipe"
    assert val_same is val_after and off["ece_test"] == off["ece_test_before"]
    np.testing.assert_allclose(answer(x_test), test_after, atol=1e-6)  # the weights stay as they were


def test_calibrate_puts_the_weights_back_when_the_model_disagrees_with_the_folded_temperature():
    model, _ = _nested([keras.layers.Dense(3, activation="softmax", name="out")])
    x = np.random.default_rng(4).normal(0, 4, (50, 3)).astype("float32")
    weights = [w.copy() for w in model.get_weights()]
    probabilities = np.asarray(model.predict_on_batch(x), np.float64)
    labels = probabilities.argmax(axis=1)
    labels[:12] = (labels[:12] + 1) % 3  # 12 of 50 wrong: the best temperature lies inside the search's range
    block, _, test_after = calibrate(model, (labels, probabilities), (labels, probabilities),
                                     lambda: probabilities)  # a "model" that ignores the fold
    assert block["temperature"] is None and block["not_calibrated"].startswith("folding T = ")
    assert test_after is probabilities
    for now, then in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(now, then)


def test_calibrate_leaves_a_model_alone_when_no_validation_answer_is_wrong():
    model, _ = _nested([keras.layers.Dense(3, activation="softmax", name="out")])
    x = np.random.default_rng(6).normal(0, 4, (40, 3)).astype("float32")
    probabilities = np.asarray(model.predict_on_batch(x), np.float64)
    labels = probabilities.argmax(axis=1)  # every answer right: the log loss falls all the way to T -> 0
    block, _, _ = calibrate(model, (labels, probabilities), (labels, probabilities), lambda: probabilities)
    assert block["temperature"] is None
    assert block["not_calibrated"] == ("the validation split pins no temperature down: the best is the search's "
                                       "bound 0.05 (0 of 40 validation images wrong)")
    np.testing.assert_array_equal(model.predict_on_batch(x), probabilities.astype("float32"))
