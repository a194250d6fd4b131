"""tf.data datasets given in Python, made :class:`~transferkit.data.sources.Splits`.

Each split's dataset may yield ``(image, label)`` pairs or tfds-style ``{"image": ..., "label": ...}``
dicts, batched or not; images uint8, uint16 or float (0-1 or 0-255), gray, RGB or RGBA; labels class indices,
one-hot rows or class names. One pass over each split counts its images per class, checks the labels and
fingerprints the data (so feature caches know when it changed).
"""
import hashlib

import numpy as np
import tensorflow as tf

from transferkit.data.images import to_rgb_uint8
from transferkit.data.labels import class_indices
from transferkit.data.sources import SPLIT_NAMES, Splits, check_classes, check_pixels, label_counts, named_splits
from transferkit.errors import TransferkitError


def from_datasets(datasets, class_names=None):
    """Splits from a dict ``{"train": dataset, "val": dataset, "test": dataset}`` of ``tf.data`` datasets.

    Without ``class_names``, the names a dataset carries itself (``image_dataset_from_directory`` sets
    ``class_names`` on the datasets it makes) are used.

    Example:
        >>> train = keras.utils.image_dataset_from_directory("photos/train")
        >>> splits = from_datasets({"train": train, "val": val, "test": test})   # train.class_names
    """
    named = named_splits(datasets, "dataset data")
    if class_names is None:
        carried = {name: list(d.class_names) for name, d in named.items() if getattr(d, "class_names", None)}
        if len({tuple(names) for names in carried.values()}) > 1:
            raise TransferkitError("the datasets' class_names differ between splits "
                                   f"({'; '.join(f'{k}: {v}' for k, v in carried.items())}), so the same label "
                                   "means different classes: pass class_names=[...] for all, and matching datasets")
        class_names = next(iter(carried.values()), None)
    datasets = {name: _pairs(name, dataset) for name, dataset in named.items()}
    seen = {name: _read(name, dataset) for name, dataset in datasets.items()}
    indices, class_names = class_indices({name: labels for name, (labels, _, _) in seen.items()}, class_names)
    high = max(high for _, high, _ in seen.values())
    digest = hashlib.sha256(repr(class_names).encode())  # string labels' indices depend on the names
    for name in SPLIT_NAMES:  # per-element digests, sorted: the same data in another order is the same data
        digest.update(b"".join(sorted(seen[name][2])) + name.encode())
    scale = 255.0 if high <= 1.0 else 1.0
    converted = {name: _converted(dataset, scale, _label_converter(dataset.element_spec[1], class_names))
                 for name, dataset in datasets.items()}
    counts = {name: len(labels) for name, labels in indices.items()}
    per_class = {name: label_counts(labels, len(class_names)) for name, labels in indices.items()}
    check_classes(counts, class_names, per_class["train"])
    return Splits(converted, counts, class_names, digest.hexdigest()[:16], per_class)


def _pairs(name, dataset):
    """``dataset`` as unbatched ``(image, label)`` pairs."""
    if not isinstance(dataset, tf.data.Dataset):
        raise TransferkitError(f"dataset data: the {name} split is a {type(dataset).__name__}, not a tf.data.Dataset")
    spec = dataset.element_spec
    if isinstance(spec, dict):
        if not {"image", "label"} <= spec.keys():
            raise TransferkitError(f"dataset data: the {name} split yields dicts with keys {sorted(spec)}; "
                                   "give (image, label) pairs, or dicts with 'image' and 'label'")
        dataset, spec = dataset.map(lambda d: (d["image"], d["label"])), (spec["image"], spec["label"])
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise TransferkitError(f"dataset data: the {name} split must yield (image, label) pairs; it yields {spec}")
    image, label = spec
    gray_batch = image.shape.rank == 3 and image.shape[-1] not in (1, 3, 4) and label.shape.rank == 1
    if image.shape.rank == 4 or gray_batch:
        dataset, (image, label) = dataset.unbatch(), (tf.TensorSpec(image.shape[1:], image.dtype),
                                                      tf.TensorSpec(label.shape[1:], label.dtype))
    if image.shape.rank == 2:
        dataset = dataset.map(lambda x, y: (x[..., tf.newaxis], y))
    elif image.shape.rank != 3:
        raise TransferkitError(f"dataset data: the {name} split's images have shape {image.shape}; "
                               "give HxW, HxWxC or batches of them")
    if not (image.dtype.is_integer or image.dtype.is_floating) or label.shape.rank not in (0, 1):
        raise TransferkitError(f"dataset data: the {name} split yields {image.dtype.name} images with labels of "
                               f"shape {label.shape}; give number images and one label per image")
    return dataset


def _read(name, dataset):
    """One pass over a split: (its labels, its images' largest value if float else 256, element digests)."""
    labels, high, digests = [], 0.0, []
    for image, label in dataset.as_numpy_iterator():
        try:
            check_pixels(image)
        except TransferkitError as err:
            raise TransferkitError(f"{name}: {err}") from None
        high = max(high, float(image.max()) if image.dtype.kind == "f" and image.size else 256.0)
        labels.append(label.decode() if isinstance(label, bytes) else label)
        digests.append(hashlib.sha1(image.tobytes() + str(image.shape).encode() + np.asarray(label).tobytes()).digest())
    return np.asarray(labels), high, digests


def _converted(dataset, scale, to_index):
    return dataset.map(lambda x, y: (_rgb(x, scale), to_index(y)), num_parallel_calls=tf.data.AUTOTUNE)


def _rgb(image, scale):
    """An image tensor as RGB uint8: floats times ``scale`` (255 for a 0-1 scale), uint16 scaled to 8 bits."""
    if image.dtype.is_floating:
        image = tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32) * scale), 0, 255), tf.uint8)
    elif image.dtype not in (tf.uint8, tf.uint16):  # other integers hold 0-255 (checked when read)
        image = tf.cast(image, tf.uint8)
    return to_rgb_uint8(image)


def _label_converter(spec, class_names):
    """A tf function from one label (index, one-hot row or class name) to its int32 class index."""
    if spec.dtype == tf.string:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(class_names), tf.range(len(class_names))), -1)
        return lambda y: table.lookup(y)
    if spec.shape.rank == 1:
        return lambda y: tf.cast(tf.argmax(y), tf.int32)
    return lambda y: tf.cast(y, tf.int32)
