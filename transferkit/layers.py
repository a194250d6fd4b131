"""Custom Keras layers that travel inside saved models (registered, serializable, no Lambda).

Every custom layer a transferkit model can hold is here, so ``import transferkit.layers`` is all it takes
to load a ``.keras`` file.

Example:
    >>> import transferkit.layers
    >>> model = keras.saving.load_model("runs/demo-scratch-20261123-171500/model.keras", safe_mode=True)
"""
import keras
import tensorflow as tf
from keras import ops

# Per-channel ImageNet statistics in RGB order on the 0-255 scale: caffe's mean, and torch's mean and std.
CAFFE_MEAN = (123.68, 116.779, 103.939)
TORCH_MEAN = (123.675, 116.28, 103.53)
TORCH_STD = (58.395, 57.12, 57.375)
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
            x = ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN[::-1], dtype=x.dtype)
        elif self.mode == "tf":
            x = x / 127.5 - 1.0
        elif self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(TORCH_STD, dtype=x.dtype)
            x = (x - mean) / std
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="transferkit")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalization (AlexNet paper, section 3.3).

    ``b = a / (bias + alpha * sum(a_j ** 2 over the 2 * depth_radius + 1 nearest channels)) ** beta``;
    the defaults are the paper's k=2, n=5, alpha=1e-4, beta=0.75. It computes in float32 under any dtype
    policy and returns the policy's compute dtype: TensorFlow has no bfloat16 CPU kernel for it, and in
    float16 the squares of activations above 256 overflow.

    Example:
        >>> x = keras.Input((55, 55, 96))
        >>> LocalResponseNormalization()(x).shape
        (None, 55, 55, 96)
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        outputs = tf.nn.local_response_normalization(
            ops.cast(inputs, "float32"), depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
            beta=self.beta,
        )
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }
