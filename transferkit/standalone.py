"""Keras models that load without transferkit: its ``Preprocess`` layer replaced by built-in Keras layers.

``caffe`` (RGB to BGR, minus the ImageNet mean) is a fixed 1x1 ``Conv2D`` whose kernel permutes the channels
and whose bias is minus the mean (exact: each output is one input times 1 plus zeros); ``tf`` is
``Rescaling(1 / 127.5, offset=-1)``; ``torch`` is ``Normalization`` with the ImageNet mean and variance;
``none`` is ``Identity``. A model with another transferkit layer (AlexNet's ``LocalResponseNormalization``,
a power of a windowed sum that no built-in layer computes) keeps it, and :func:`required_imports` names
the module to import before loading.

Example:
    >>> portable = standalone_model(trained_model)
    >>> required_imports(portable)
    []
"""
import keras
import numpy as np

from transferkit.layers import CAFFE_MEAN, TORCH_MEAN, TORCH_STD, Preprocess


def builtin_preprocess(mode, name="preprocess", dtype=None):
    """A built-in Keras layer that computes ``Preprocess(mode)`` on RGB images (0-255).

    Example:
        >>> layer = builtin_preprocess("caffe")
        >>> layer(np.full((1, 1, 1, 3), [10, 20, 30], "float32"))[0, 0, 0]   # [30 - 103.939, ..., 10 - 123.68]
    """
    if mode == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=name, dtype=dtype)
    if mode == "torch":
        return keras.layers.Normalization(mean=TORCH_MEAN, variance=np.square(TORCH_STD), name=name, dtype=dtype)
    if mode == "none":
        return keras.layers.Identity(name=name, dtype=dtype)
    if mode != "caffe":
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    layer = keras.layers.Conv2D(3, 1, name=name, dtype=dtype, trainable=False)
    layer.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[0, 0, [2, 1, 0], [0, 1, 2]] = 1.0  # output channel c is input channel 2 - c: RGB to BGR
    layer.set_weights([kernel, -np.asarray(CAFFE_MEAN[::-1], np.float32)])
    return layer


def standalone_model(model):
    """A copy of ``model`` with every ``Preprocess`` layer (nested models included) replaced by
    :func:`builtin_preprocess`; the other layers are shared with ``model``, weights and all. Uncompiled.

    Example:
        >>> standalone_model(model).get_layer("preprocess").__class__.__name__
        'Conv2D'
    """
    def swap(layer):
        if isinstance(layer, Preprocess):
            return builtin_preprocess(layer.mode, layer.name, layer.dtype_policy.name)
        return layer

    return keras.models.clone_model(model, clone_function=swap, recursive=True)


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def required_imports(model):
    """The modules to import before ``keras.saving.load_model`` can load ``model``: those of the registered
    non-Keras layers it holds, sorted; empty for a model of built-in layers.

    Example:
        >>> required_imports(alexnet_model)
        ['transferkit.layers']
    """
    return sorted({type(layer).__module__ for layer in _layers(model)
                   if not type(layer).__module__.startswith("keras.")})
