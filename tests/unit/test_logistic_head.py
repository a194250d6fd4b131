"""A logistic regression folded into one softmax Dense layer gives scikit-learn's probabilities."""
import keras
import numpy as np
import pytest

from transferkit.heads import build_head
from transferkit.probe import dense_weights, fit_quietly, logistic
from transferkit.recipes import HeadConfig


@pytest.mark.parametrize("classes", [2, 4])
def test_the_folded_dense_layer_answers_as_the_fitted_pipeline(classes):
    rng = np.random.default_rng(classes)
    labels = np.arange(80) % classes
    centres = rng.normal(size=(classes, 12)) * 2
    # unstandardised conv maps, (N, 2, 2, 12): offsets and scales differ by channel, as a base's outputs do
    features = (centres[labels][:, None, None, :] + rng.normal(size=(80, 2, 2, 12))) * rng.uniform(0.1, 9, 12) + 5
    pooled = features.mean(axis=(1, 2))
    pipeline = fit_quietly(logistic(0.1), pooled, labels)
    head = build_head((2, 2, 12), classes, HeadConfig(units=0, batchnorm=False, dropout=0))
    head.get_layer("predictions").set_weights(dense_weights(pipeline, classes))
    ours = keras.ops.convert_to_numpy(head(features.astype("float32")))
    np.testing.assert_allclose(ours, pipeline.predict_proba(pooled), atol=1e-5)
    assert (ours.argmax(1) == labels).mean() > 0.9


def test_a_class_absent_from_training_gets_no_probability():
    x, labels = np.random.default_rng(0).normal(size=(30, 5)), np.arange(30) % 3  # classes 0-2 of 4
    kernel, bias = dense_weights(fit_quietly(logistic(), x + 3 * np.eye(5)[labels], labels), 4)
    logits = x @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    assert (probabilities[:, 3] / probabilities.sum(1) < 1e-9).all()
