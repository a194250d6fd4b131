"""From-scratch baseline networks (AlexNet, VGG, GoogLeNet, small convnet, LeNet-5) to compare transfer learning
against.

Every builder takes inputs already scaled to [0, 1]; the caller puts ``layers.Rescaling(1 / 255)``
in front. Models contain no Lambda layers, so they save to ``.keras`` and load back with
``safe_mode=True``. GoogLeNet also trains auxiliary classifiers (``BaselineSpec.auxiliary``), which are never
part of the network a builder returns.

Example:
    >>> model = create_baseline("small_convnet", (32, 32, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
"""
from dataclasses import dataclass
from typing import Callable, Optional

import keras
from keras import layers

from transferkit.errors import TransferkitError
from transferkit.layers import LocalResponseNormalization
from transferkit.registry import Registry


@dataclass(frozen=True)
class BaselineSpec:
    """A from-scratch network: how to build it and which square input sizes it accepts.

    ``builder(input_shape, num_classes)`` returns the body plus a softmax output;
    ``min_size`` is the smallest height/width that builds (auxiliary classifiers included), ``default_size``
    the size the network was designed for. For a network trained with auxiliary classifiers,
    ``auxiliary(network, num_classes)`` returns a model from the network's input to its output followed by the
    auxiliary classifiers' outputs, sharing the network's layers; each auxiliary loss weighs
    ``auxiliary_weight`` in training, and only the network itself is kept.

    Example:
        >>> spec = BASELINES.get_or_raise("lenet5")
        >>> spec.min_size, spec.default_size
        (12, 32)
    """

    name: str
    builder: Callable[[tuple, int], keras.Model]
    min_size: int
    default_size: int
    description: str
    auxiliary: Optional[Callable[[keras.Model, int], keras.Model]] = None
    auxiliary_weight: float = 0.0

    def check_size(self, height, width=None):
        """Raise a TransferkitError if ``height`` x ``width`` (square if no width) is below ``min_size``."""
        width = height if width is None else width
        if height < self.min_size or width < self.min_size:
            raise TransferkitError(f"baseline '{self.name}' needs inputs of at least {self.min_size}x{self.min_size} "
                                   f"pixels, got {height}x{width}")


BASELINES = Registry("baseline")


def create_baseline(name, input_shape, num_classes):
    """Build the baseline ``name`` for ``input_shape`` (height, width, channels) and ``num_classes``.

    Raises TransferkitError for an unknown name (suggesting the closest one) or an input
    smaller than the network's ``min_size``.

    Example:
        >>> model = create_baseline("alexnet", (227, 227, 3), num_classes=1000)
        >>> model.count_params()
        62378344
    """
    spec = BASELINES.get_or_raise(name)
    if len(input_shape) != 3 or any(d is None for d in input_shape):
        raise TransferkitError(
            f"baseline '{name}' needs a fixed input_shape (height, width, channels), got {tuple(input_shape)}"
        )
    spec.check_size(input_shape[0], input_shape[1])
    return spec.builder(tuple(input_shape), num_classes)


def _register(name, min_size, default_size, description, auxiliary=None, auxiliary_weight=0.0):
    """Decorator registering a builder in BASELINES under ``name``."""

    def decorator(builder):
        BASELINES.register(name, BaselineSpec(name, builder, min_size, default_size, description, auxiliary,
                                              auxiliary_weight))
        return builder

    return decorator


def _classifier_head(num_classes):
    """AlexNet/VGG head: Flatten, two Dense(4096) each followed by Dropout(0.5), softmax output."""
    head = [layers.Flatten()]
    for _ in range(2):
        head += [layers.Dense(4096, activation="relu"), layers.Dropout(0.5)]
    return head + [layers.Dense(num_classes, activation="softmax", dtype="float32")]


def _sequential(name, input_shape, stack):
    """A Sequential model called ``name`` with a fixed Input of ``input_shape``."""
    return keras.Sequential([keras.Input(shape=input_shape), *stack], name=name)


@_register("alexnet", min_size=67, default_size=227,
           description="AlexNet (Krizhevsky et al. 2012) with LRN, single-tower, 62.4M params at 227x227")
def _alexnet(input_shape, num_classes):
    """AlexNet as in the course notes; 67 is the smallest input whose last max-pool still has output."""
    return _sequential("alexnet", input_shape, [
        layers.Conv2D(96, 11, strides=4, activation="relu"),
        LocalResponseNormalization(),
        layers.MaxPooling2D(3, strides=2),
        layers.Conv2D(256, 5, padding="same", activation="relu"),
        LocalResponseNormalization(),
        layers.MaxPooling2D(3, strides=2),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(3, strides=2),
        *_classifier_head(num_classes),
    ])


def _vgg(name, blocks, input_shape, num_classes):
    """A VGG network: ``blocks`` lists each block's conv widths; every block ends in MaxPool(2, 2)."""
    stack = []
    for widths in blocks:
        stack += [layers.Conv2D(w, 3, padding="same", activation="relu") for w in widths]
        stack.append(layers.MaxPooling2D(2, strides=2))
    return _sequential(name, input_shape, stack + _classifier_head(num_classes))


@_register("vgg16", min_size=32, default_size=224,
           description="VGG-16 (configuration D, Simonyan & Zisserman 2014), 138.4M params at 224x224")
def _vgg16(input_shape, num_classes):
    """VGG-16 from scratch: 13 3x3 convs in five blocks, two Dense(4096) + Dropout(0.5)."""
    return _vgg("vgg16", [(64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3], input_shape, num_classes)


@_register("vgg11", min_size=32, default_size=224,
           description="VGG-11 (configuration A, Simonyan & Zisserman 2014), 132.9M params at 224x224")
def _vgg11(input_shape, num_classes):
    """VGG-11 from scratch: 8 3x3 convs in five blocks, two Dense(4096) + Dropout(0.5)."""
    return _vgg("vgg11", [(64,), (128,), (256, 256), (512, 512), (512, 512)], input_shape, num_classes)


# GoogLeNet's inception modules (Szegedy et al. 2014, Table 1): #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
_INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _conv(x, filters, size, name, strides=1):
    """A 'same' convolution with ReLU, as every GoogLeNet convolution is."""
    return layers.Conv2D(filters, size, strides=strides, padding="same", activation="relu", name=name)(x)


def _max_pool(x, name, strides=2):
    """GoogLeNet's 3x3 max pooling; 'same' padding gives the paper's map sizes (112, 56, 28, 14, 7 at 224 px)."""
    return layers.MaxPooling2D(3, strides=strides, padding="same", name=name)(x)


def _lrn(x, name):
    """LRN as the reference Caffe GoogLeNet has it (the paper gives no constants): 5 channels, alpha 1e-4 / 5
    (Caffe divides alpha by the window), beta 0.75, k 1."""
    return LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75, name=name)(x)


def _inception(x, name, widths):
    """An inception module: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max pool -> 1x1 branches, concatenated."""
    ones, reduce3, threes, reduce5, fives, projection = widths
    return layers.Concatenate(name=name)([
        _conv(x, ones, 1, f"{name}_1x1"),
        _conv(_conv(x, reduce3, 1, f"{name}_3x3_reduce"), threes, 3, f"{name}_3x3"),
        _conv(_conv(x, reduce5, 1, f"{name}_5x5_reduce"), fives, 5, f"{name}_5x5"),
        _conv(_max_pool(x, f"{name}_pool", strides=1), projection, 1, f"{name}_pool_proj"),
    ])


def _auxiliary_classifier(x, num_classes, name):
    """GoogLeNet's auxiliary classifier (section 5): 5x5/3 average pooling (4x4 maps at 224 px), 1x1 conv 128,
    Dense 1024, dropout 0.7, softmax. The pooling needs a 5x5 map: inputs of at least 65 px."""
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = layers.Flatten(name=f"{name}_flatten")(_conv(x, 128, 1, f"{name}_conv"))
    x = layers.Dropout(0.7, name=f"{name}_dropout")(layers.Dense(1024, activation="relu", name=f"{name}_fc")(x))
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=f"{name}_classifier")(x)


def _googlenet_auxiliary(network, num_classes):
    """GoogLeNet with its auxiliary classifiers on inception 4a and 4d as two more outputs, for training.

    Example:
        >>> _googlenet_auxiliary(create_baseline("googlenet", (224, 224, 3), 1000), 1000).output_shape
        [(None, 1000), (None, 1000), (None, 1000)]
    """
    auxiliary = [_auxiliary_classifier(network.get_layer(f"inception_{module}").output, num_classes, f"aux_{module}")
                 for module in ("4a", "4d")]
    return keras.Model(network.input, [network.output, *auxiliary], name=f"{network.name}_auxiliary")


@_register("googlenet", min_size=65, default_size=224,
           description="GoogLeNet (Szegedy et al. 2014), 22 layers, 9 inception modules, auxiliary classifiers on "
                       "4a and 4d in training only, 7.0M params at 224x224",
           auxiliary=_googlenet_auxiliary, auxiliary_weight=0.3)
def _googlenet(input_shape, num_classes):
    """GoogLeNet (Table 1, Figure 3): conv 7x7/2, max pool, LRN, conv 1x1 and 3x3, LRN, max pool, the nine
    inception modules with 3x3/2 max pools before 4a and 5a, global average pooling (the paper's 7x7 average
    pool at 224 px), dropout 0.4 and one softmax layer."""
    inputs = keras.Input(shape=input_shape)
    x = _conv(inputs, 64, 7, "conv1_7x7_s2", strides=2)
    x = _lrn(_max_pool(x, "pool1_3x3_s2"), "pool1_norm1")
    x = _conv(_conv(x, 64, 1, "conv2_3x3_reduce"), 192, 3, "conv2_3x3")
    x = _max_pool(_lrn(x, "conv2_norm2"), "pool2_3x3_s2")
    for module, widths in _INCEPTION.items():
        if module in ("4a", "5a"):
            x = _max_pool(x, f"pool{int(module[0]) - 1}_3x3_s2")
        x = _inception(x, f"inception_{module}", widths)
    x = layers.Dropout(0.4, name="pool5_drop")(layers.GlobalAveragePooling2D(name="pool5")(x))
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name="googlenet")


@_register("small_convnet", min_size=16, default_size=150,
           description="the cats-vs-dogs convnet of Deep Learning with Python, 'same' convs for small images")
def _small_convnet(input_shape, num_classes):
    """Deep Learning with Python's cats-vs-dogs convnet.

    The book uses valid convs at 150x150; here the convs use padding="same" so that only the
    four MaxPool(2) layers shrink the image, and it builds on inputs as small as 16x16
    (the toolkit's demo runs it at 32x32).
    """
    stack = []
    for filters in (32, 64, 128, 128):
        stack += [layers.Conv2D(filters, 3, padding="same", activation="relu"), layers.MaxPooling2D(2)]
    return _sequential("small_convnet", input_shape, stack + [
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(512, activation="relu"),
        layers.Dense(num_classes, activation="softmax", dtype="float32"),
    ])


@_register("lenet5", min_size=12, default_size=32,
           description="LeNet-5 (LeCun et al. 1998) with tanh and average pooling, 61,706 params at 28x28x1")
def _lenet5(input_shape, num_classes):
    """LeNet-5: 'same' 5x5 conv, avg-pool, valid 5x5 conv, avg-pool, Dense 120 and 84, all tanh."""
    return _sequential("lenet5", input_shape, [
        layers.Conv2D(6, 5, padding="same", activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Conv2D(16, 5, activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(120, activation="tanh"),
        layers.Dense(84, activation="tanh"),
        layers.Dense(num_classes, activation="softmax", dtype="float32"),
    ])
