"""The loss and accuracy a stage compiles: sparse integer labels as usual, and soft labels (label smoothing,
MixUp, CutMix) through the same objects, so training batches may carry soft labels while validation stays sparse."""
import keras
from keras import ops


def _dense(y_true, y_pred):
    """``y_true`` as class probabilities shaped like ``y_pred``: integer labels one-hot, soft labels as they are."""
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1]:
        return ops.cast(y_true, y_pred.dtype)
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    return ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)


@keras.saving.register_keras_serializable("transferkit")
class Crossentropy(keras.losses.Loss):
    """Categorical cross-entropy of softmax outputs against integer or soft labels, with label smoothing.

    Example:
        >>> loss = Crossentropy(label_smoothing=0.1)
        >>> float(loss(np.array([0]), np.array([[0.9, 0.1]]))) > float(Crossentropy()(np.array([0]), np.array([[0.9, 0.1]])))
        True
    """

    def __init__(self, label_smoothing=0.0, name="crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(_dense(y_true, y_pred), y_pred,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _accuracy(y_true, y_pred):
    labels = ops.argmax(_dense(y_true, y_pred), axis=-1)
    return ops.cast(ops.equal(labels, ops.argmax(y_pred, axis=-1)), "float32")


@keras.saving.register_keras_serializable("transferkit")
class Accuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy against integer labels, or against the largest share of soft labels."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def loss_and_metric(label_smoothing=0.0, soft_labels=False):
    """``(loss, accuracy)`` for ``compile``: Keras' sparse ones for integer labels, else :class:`Crossentropy`
    and :class:`Accuracy`, which take both kinds.

    Example:
        >>> loss, accuracy = loss_and_metric(label_smoothing=0.1)
    """
    if not label_smoothing and not soft_labels:
        return keras.losses.SparseCategoricalCrossentropy(), \
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return Crossentropy(label_smoothing), Accuracy()
