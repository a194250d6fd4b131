"""Data sources, one registry: each turns a recipe's ``data`` section into :class:`Splits`.

A source yields unbatched ``(image, label)`` pairs: RGB ``uint8`` images of any size and ``int32`` labels;
:mod:`transferkit.data.pipeline` resizes, caches, shuffles, batches and augments them.
"""
import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tensorflow as tf

from transferkit.data.embedded import ArraySplits, load_sample
from transferkit.errors import TransferkitError
from transferkit.registry import Registry

DATA_SOURCES = Registry("data source")
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Splits:
    """Train, validation and test data with their class names.

    Args:
        datasets: split name -> unbatched ``tf.data.Dataset`` of ``(uint8 image HxWx3, int32 label)``.
        counts: split name -> number of examples.
        class_names: tuple of class names, indexed by label.
        fingerprint: a digest of the data, so caches know when the data changed.
        class_counts: split name -> images per class, when the source knows them without reading the images
            (see :func:`class_counts`).

    Example:
        >>> splits = from_arrays(load_sample())
        >>> splits.counts["train"], splits.class_names[:2]
        (1000, ('t-shirt_top', 'trouser'))
    """

    datasets: dict
    counts: dict
    class_names: tuple
    fingerprint: str
    class_counts: Optional[dict] = None

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.class_names)


def rgb_uint8(images):
    """Images (N, H, W) or (N, H, W, 1|3|4), uint8 or float (0-1 or 0-255), as RGB uint8 (N, H, W, 3).

    Example:
        >>> rgb_uint8(np.zeros((2, 28, 28), np.float32)).shape
        (2, 28, 28, 3)
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise TransferkitError(f"images must be (N, H, W), (N, H, W, 1|3|4) arrays; got shape {images.shape}")
    if images.dtype != np.uint8:
        top = 1.0 if images.size and float(np.max(images)) <= 1.0 else 255.0
        images = np.clip(np.round(images.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images[..., :3]


def from_arrays(arrays, class_names=None):
    """Splits from in-memory arrays: an :class:`ArraySplits` or a dict ``{split: (images, labels)}``.

    Images may be uint8 (0-255) or float (0-1 or 0-255), gray, RGB or RGBA.

    Example:
        >>> splits = from_arrays({"train": (x, y), "val": (xv, yv), "test": (xt, yt)}, ["cat", "dog"])
    """
    if isinstance(arrays, ArraySplits):
        class_names = arrays.class_names
        arrays = {"train": arrays.train, "val": arrays.val, "test": arrays.test}
    missing = [name for name in SPLIT_NAMES if name not in arrays]
    if missing:
        raise TransferkitError(f"array data needs train, val and test splits; missing: {', '.join(missing)}")
    digest = hashlib.sha256()
    datasets, counts, labels_by_split = {}, {}, {}
    for name in SPLIT_NAMES:
        images, labels = arrays[name]
        images, labels = rgb_uint8(images), np.asarray(labels).astype(np.int32).reshape(-1)
        if len(images) != len(labels):
            raise TransferkitError(f"{name}: {len(images)} images but {len(labels)} labels")
        digest.update(images.tobytes())
        digest.update(labels.tobytes())
        datasets[name] = tf.data.Dataset.from_tensor_slices((images, labels))
        counts[name] = len(labels)
        labels_by_split[name] = labels
    if class_names is None:
        class_names = [str(i) for i in range(int(max(np.max(arrays[n][1]) for n in SPLIT_NAMES)) + 1)]
    check_classes(counts, class_names, max(int(np.max(np.asarray(arrays[n][1]))) for n in SPLIT_NAMES))
    per_class = {name: label_counts(labels, len(class_names)) for name, labels in labels_by_split.items()}
    return Splits(datasets, counts, tuple(str(c) for c in class_names), digest.hexdigest()[:16], per_class)


def label_counts(labels, num_classes):
    """How many of ``labels`` fall in each class, as a tuple of ``num_classes`` ints.

    Example:
        >>> label_counts([0, 2, 2], 3)
        (1, 0, 2)
    """
    return tuple(int(n) for n in np.bincount(np.asarray(labels, np.int64), minlength=num_classes))


def class_counts(splits, split="train"):
    """Images per class in ``split`` of :class:`Splits`: from the source if it knows them, else by reading
    the split once (a tfds split without ``per_class``).

    Example:
        >>> class_counts(from_arrays(load_sample()), "val")[:3]
        (30, 30, 30)
    """
    if splits.class_counts and split in splits.class_counts:
        return tuple(splits.class_counts[split])
    labels = [int(y) for y in splits.datasets[split].map(lambda x, y: y)]
    return label_counts(labels, splits.num_classes)


def check_classes(counts, class_names, max_label):
    """Raise a TransferkitError for fewer than 2 classes, an unnamed label or an empty split."""
    if len(class_names) < 2:
        raise TransferkitError(f"a classifier needs at least 2 classes; the data has {len(class_names)}")
    if max_label >= len(class_names):
        raise TransferkitError(f"label {max_label} has no class name ({len(class_names)} names given)")
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise TransferkitError(f"the {', '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty")


def first_per_class(images, labels, count):
    """The first ``count`` examples of each class, in their original order.

    Example:
        >>> first_per_class(np.arange(6), np.array([0, 1, 0, 1, 0, 1]), 2)
        (array([0, 1, 2, 3]), array([0, 1, 0, 1]))
    """
    labels = np.asarray(labels)
    short = [int(c) for c, n in enumerate(np.bincount(labels)) if 0 < n < count]
    if short:
        raise TransferkitError(f"data.per_class asks for {count} images of each class; class {short[0]} has fewer")
    keep = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:count]] = True
    return np.asarray(images)[keep], labels[keep]


@DATA_SOURCES.register("sample")
def sample_source(config, seed):
    """The embedded Fashion-MNIST sample (offline, shipped with transferkit); ``data.per_class: [a, b, c]``
    keeps the first a, b and c images of each class of its train, val and test splits."""
    sample = load_sample()
    if not config.per_class:
        return from_arrays(sample)
    if len(config.per_class) != 3:
        raise TransferkitError("data.per_class takes three numbers: train, val and test images per class")
    splits = {name: first_per_class(*getattr(sample, name), count)
              for name, count in zip(SPLIT_NAMES, config.per_class)}
    return from_arrays(splits, sample.class_names)


def load_data(config, seed=0):
    """Build :class:`Splits` for a recipe's ``data`` section (a :class:`~transferkit.recipes.DataConfig`).

    Example:
        >>> load_data(load_recipe("demo").data).num_classes
        10
    """
    return DATA_SOURCES.get_or_raise(config.source)(config, seed)
