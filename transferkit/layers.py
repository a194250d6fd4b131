"""Custom Keras layers that travel inside saved models (registered, serializable, no Lambda)."""
import keras
from keras import ops

# Per-channel ImageNet statistics in RGB order on the 0-255 scale: caffe's mean, and torch's mean and std.
_CAFFE_MEAN = (123.68, 116.779, 103.939)
_TORCH_MEAN = (123.675, 116.28, 103.53)
_TORCH_STD = (58.395, 57.12, 57.375)
PREPROCESS_MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="transferkit")
class Preprocess(keras.layers.Layer):
    """A backbone's input preprocessing, applied to RGB images on the 0-255 scale.

    Modes (as in ``keras.applications``): ``caffe`` (RGB to BGR, minus the ImageNet mean: VGG, ResNet),
    ``tf`` (scale to [-1, 1]: Inception, MobileNet), ``torch`` (scale to [0, 1], then standardise),
    ``none`` (the backbone preprocesses itself: EfficientNet).

    Example:
        >>> Preprocess("caffe")(np.zeros((1, 32, 32, 3), "float32"))[0, 0, 0]   # [-103.939, -116.779, -123.68]
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}; one of {PREPROCESS_MODES}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN[::-1], dtype=x.dtype)
        elif self.mode == "tf":
            x = x / 127.5 - 1.0
        elif self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
            x = (x - mean) / std
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
