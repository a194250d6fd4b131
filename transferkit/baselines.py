"""From-scratch baseline networks (AlexNet, VGG, small convnet, LeNet-5) to compare transfer learning against.

Every builder takes inputs already scaled to [0, 1]; the caller puts ``layers.Rescaling(1 / 255)``
in front. Models contain no Lambda layers, so they save to ``.keras`` and load back with
``safe_mode=True``.

Example:
    >>> model = create_baseline("small_convnet", (32, 32, 3), num_classes=10)
    >>> model.output_shape
    (None, 10)
"""
from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers

from transferkit.errors import TransferkitError
from transferkit.layers import LocalResponseNormalization
from transferkit.registry import Registry


@dataclass(frozen=True)
class BaselineSpec:
    """A from-scratch network: how to build it and which square input sizes it accepts.

    ``builder(input_shape, num_classes)`` returns the body plus a softmax output;
    ``min_size`` is the smallest height/width that builds, ``default_size`` the size the
    network was designed for.

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


def _register(name, min_size, default_size, description):
    """Decorator registering a builder in BASELINES under ``name``."""

    def decorator(builder):
        BASELINES.register(name, BaselineSpec(name, builder, min_size, default_size, description))
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
