"""Data sources, one registry: each turns a recipe's ``data`` section into :class:`Splits`.

A source yields unbatched ``(image, label)`` pairs: RGB ``uint8`` images of any size and ``int32`` labels;
:mod:`transferkit.data.pipeline` resizes, caches, shuffles, batches and augments them.
"""
import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tensorflow as tf

from transferkit.data.embedded import SAMPLES, ArraySplits
from transferkit.data.labels import class_indices
from transferkit.errors import TransferkitError
from transferkit.registry import Registry

DATA_SOURCES = Registry("data source")
SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {"validation": "val", "valid": "val"}


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
        files: split name -> the file of each image (relative to the data folder), in order, for a folder
            source; see :meth:`names`.

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
    files: Optional[dict] = None

    def __post_init__(self):
        missing = [name for name in SPLIT_NAMES if name not in self.datasets or name not in self.counts]
        if missing:
            raise TransferkitError(f"Splits needs datasets and counts for train, val and test; missing: "
                                   f"{', '.join(missing)}")
        for name in SPLIT_NAMES:
            spec = self.datasets[name].element_spec
            if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0].dtype == tf.uint8
                    and spec[0].shape.rank == 3 and spec[0].shape[-1] in (3, None)
                    and spec[1].dtype.is_integer and spec[1].shape.rank == 0):
                raise TransferkitError(f"Splits datasets must yield unbatched (uint8 HxWx3 image, int label) "
                                       f"pairs; the {name} split yields {spec}. Pass the datasets as a dict "
                                       "(transferkit.from_datasets) to have them converted")

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.class_names)

    def names(self, split):
        """A name for each image of ``split``, in order: its file for a folder source, else ``#index``.

        Example:
            >>> load_data(DataConfig(source="folder", path="photos")).names("test")[:2]
            ['cat/3.jpg', 'dog/7.jpg']
        """
        if self.files:
            return list(self.files[split])
        return [f"#{index}" for index in range(self.counts[split])]


def rgb_uint8(images, top=None):
    """Images (N, H, W) or (N, H, W, 1|3|4) as RGB uint8 (N, H, W, 3).

    uint8 stays as it is, uint16 is scaled to 8 bits (as 16-bit PNG files are), other integers must lie in
    0-255, and floats on a 0-1 scale (all values <= 1) or 0-255 are scaled to 0-255; ``top`` fixes the float
    scale (1 or 255) instead. NaN, infinite or negative values are refused, since they mean images were
    preprocessed already.

    Example:
        >>> rgb_uint8(np.zeros((2, 28, 28), np.float32)).shape
        (2, 28, 28, 3)
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise TransferkitError(f"images must be (N, H, W), (N, H, W, 1|3|4) arrays; got shape {images.shape}")
    check_pixels(images)
    if images.dtype == np.uint16:
        images = ((images.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif images.dtype.kind == "f":
        top = top or (1.0 if images.size and float(images.max()) <= 1.0 else 255.0)
        images = np.clip(np.round(images.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)
    else:
        images = images.astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images[..., :3]


def check_pixels(images):
    """Raise a one-line TransferkitError unless ``images`` (an array) hold pixel values: floats finite in
    0-255, integers in 0-255 (uint16 in full). Anything else means images preprocessed already, or not images.

    Example:
        >>> check_pixels(np.array([[-1.0, 1.0]]))
        Traceback (most recent call last):
        TransferkitError: float images must be on a 0-1 or 0-255 scale; found -1 to 1 (...)
    """
    kind = images.dtype.kind
    if kind not in "iubf":
        raise TransferkitError(f"images must be numbers (uint8, uint16 or float); got dtype {images.dtype}")
    if not images.size or images.dtype in (np.uint8, np.uint16):
        return
    if kind == "f" and not np.all(np.isfinite(images)):
        raise TransferkitError("images hold NaN or infinite values")
    low, high = images.min(), images.max()
    if kind == "f" and (low < 0 or high > 255):
        raise TransferkitError(f"float images must be on a 0-1 or 0-255 scale; found {low:g} to {high:g} "
                               "(give the images before any preprocessing: transferkit applies the backbone's)")
    if kind != "f" and (low < 0 or high > 255):
        raise TransferkitError(f"integer images must hold 0-255 (or be uint16); found {low} to {high}")


def named_splits(mapping, what):
    """``mapping`` (split name -> data) with ``validation``/``valid`` read as ``val``; unknown or missing
    splits are refused. ``what`` names the data in the messages.

    Example:
        >>> sorted(named_splits({"train": 1, "validation": 2, "test": 3}, "array data"))
        ['test', 'train', 'val']
    """
    named = {}
    for key, value in mapping.items():
        name = SPLIT_ALIASES.get(key, key)
        if name not in SPLIT_NAMES:
            raise TransferkitError(f"{what} has a split {key!r}; splits are train, val (or validation) and test")
        if name in named:
            raise TransferkitError(f"{what} gives the {name} split twice")
        named[name] = value
    missing = [name for name in SPLIT_NAMES if name not in named]
    if missing:
        raise TransferkitError(f"{what} needs train, val and test splits; missing: {', '.join(missing)}")
    return named


def _images(name, images):
    """(a tf.data dataset of RGB uint8 images, their bytes for the fingerprint) from an array or a list."""
    if isinstance(images, (list, tuple)) and len({np.shape(image) for image in images}) > 1:
        arrays = [np.asarray(image) for image in images]
        floats = [image for image in arrays if image.dtype.kind == "f" and image.size]
        top = 1.0 if floats and max(float(image.max()) for image in floats) <= 1.0 else None
        each = [rgb_uint8(image[np.newaxis], top)[0] for image in arrays]
        spec = tf.TensorSpec((None, None, 3), tf.uint8)
        dataset = tf.data.Dataset.from_generator(lambda: iter(each), output_signature=spec)
        # a known length, or Keras' validation pass warns that its input "ran out of data"
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(each)))
        return dataset, len(each), b"".join(image.tobytes() + str(image.shape).encode() for image in each)
    try:
        images = rgb_uint8(images)
    except TransferkitError as err:
        raise TransferkitError(f"{name}: {err}") from None
    return tf.data.Dataset.from_tensor_slices(images), len(images), images.tobytes()


def from_arrays(arrays, class_names=None):
    """Splits from in-memory arrays: an :class:`ArraySplits` or a dict ``{split: (images, labels)}``.

    Images may be uint8, uint16 or float (0-1 or 0-255), gray, RGB or RGBA, one array per split or a list of
    images of different sizes. Labels may be class indices, one-hot rows or class names (see
    :func:`~transferkit.data.labels.class_indices`); ``validation`` is accepted for ``val``.

    Example:
        >>> splits = from_arrays({"train": (x, y), "val": (xv, yv), "test": (xt, yt)}, ["cat", "dog"])
    """
    if isinstance(arrays, ArraySplits):
        class_names = arrays.class_names
        arrays = {"train": arrays.train, "val": arrays.val, "test": arrays.test}
    arrays = named_splits(arrays, "array data")
    for name, pair in arrays.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TransferkitError(f"array data: the {name} split must be a pair (images, labels)")
    indices, class_names = class_indices({name: arrays[name][1] for name in SPLIT_NAMES}, class_names)
    digest = hashlib.sha256()
    datasets, counts = {}, {}
    for name in SPLIT_NAMES:
        images, count, data = _images(name, arrays[name][0])
        labels = indices[name]
        if count != len(labels):
            raise TransferkitError(f"{name}: {count} images but {len(labels)} labels")
        digest.update(data)
        digest.update(labels.tobytes())
        datasets[name] = tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(labels)))
        counts[name] = count
    per_class = {name: label_counts(labels, len(class_names)) for name, labels in indices.items()}
    check_classes(counts, class_names, per_class["train"])
    return Splits(datasets, counts, class_names, digest.hexdigest()[:16], per_class)


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


def check_classes(counts, class_names, train_counts=None):
    """Raise a TransferkitError for fewer than 2 classes, an empty split, or (given the train split's images
    per class) a class with no training images."""
    if len(class_names) < 2:
        raise TransferkitError(f"a classifier needs at least 2 classes; the data has {len(class_names)}")
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise TransferkitError(f"the {', '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty")
    untrained = [repr(name) for name, count in zip(class_names, train_counts or ()) if count == 0]
    if untrained:
        raise TransferkitError(f"no training images of class {', '.join(untrained[:3])}"
                               f"{' ...' if len(untrained) > 3 else ''}: drop it from class_names or add images")


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
    """A sample shipped with transferkit (offline): ``data.name`` is ``fashion_mnist`` (the default) or
    ``photos``; ``data.per_class: [a, b, c]`` keeps the first a, b and c images of each class of its train, val
    and test splits."""
    sample = SAMPLES.get_or_raise(config.name or "fashion_mnist")()
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
