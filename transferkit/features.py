"""The on-disk feature cache: conv-base features computed once per backbone, weights, size and data.

Features are streamed to disk batch by batch while they are computed, and read back memory-mapped, so a
data set whose features do not fit in memory still works: peak memory does not grow with the data set.
An entry is an uncompressed ``.npz`` (``features``, ``labels``), readable with ``np.load`` as well.
"""
import hashlib
import json
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from transferkit.cache import cache_root

_CHUNK = 1 << 22


def cache_dir():
    """Where features are cached: ``$TRANSFERKIT_CACHE/features`` (default ``~/.cache/transferkit``)."""
    return cache_root() / "features"


def cache_key(**parts):
    """A digest of everything the features depend on.

    Example:
        >>> cache_key(backbone="vgg16", weights="imagenet", image_size=150, data="ab12", split="train")
        '5f1c...'
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _member(path, name):
    """The ``name.npy`` array inside an uncompressed ``.npz``, memory-mapped (None if it cannot be)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
        offset = handle.tell()
    if not int(np.prod(shape)) or dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")


def load_entry(path):
    """``(features, labels)`` of a cache entry: features memory-mapped when possible, labels in memory."""
    features = _member(path, "features")
    with np.load(path, allow_pickle=False) as npz:
        labels = npz["labels"]
        if features is None:
            features = npz["features"]
    return features, labels


def _entry(key):
    return cache_dir() / f"{key}.npz"


def _hit(path):
    if path.is_file():
        try:
            return load_entry(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
    return None


class _Stream:
    """Appends batches of one array to a raw file, then writes it into a ``.npz`` member without loading it."""

    def __init__(self, folder, name):
        self.name, self.path = name, Path(folder) / f"{name}.raw"
        self.handle, self.count, self.shape, self.dtype = open(self.path, "wb"), 0, None, None

    def write(self, batch):
        batch = np.ascontiguousarray(batch)
        if self.shape is None:
            self.shape, self.dtype = batch.shape[1:], batch.dtype
        self.handle.write(batch.tobytes())
        self.count += len(batch)

    def into(self, archive, empty_shape=(0,)):
        self.handle.close()
        shape = (self.count, *self.shape) if self.shape is not None else empty_shape
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype or np.float32)),
                  "fortran_order": False, "shape": shape}
        with archive.open(f"{self.name}.npy", "w", force_zip64=True) as member, open(self.path, "rb") as raw:
            np.lib.format.write_array_header_2_0(member, header)
            shutil.copyfileobj(raw, member, _CHUNK)
        self.path.unlink()


def cached_extract(key, predict, batched):
    """Features of ``batched`` (``(images, labels)`` batches) by ``predict(images)``, through the cache.

    On a miss, each batch's outputs are appended to disk as soon as they are computed, so memory holds one
    batch at a time; the result is memory-mapped. Returns ``((features, labels), hit)``.

    Example:
        >>> (x, y), hit = cached_extract(key, extractor.predict_on_batch, extraction_batches(ds, 150, 32))
    """
    path = _entry(key)
    found = _hit(path)
    if found is not None:
        return found, True
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=path.parent))
    try:
        features, labels = _Stream(work, "features"), _Stream(work, "labels")
        for images, batch_labels in batched:
            features.write(np.asarray(predict(images), dtype=np.float32))  # bfloat16 has no .npy type
            labels.write(np.asarray(batch_labels))
        tmp = work / "entry.npz"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            features.into(archive)
            labels.into(archive)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_entry(path), False


def extraction_batches(dataset, image_size, batch_size, resize_mode="squash"):
    """An unbatched ``(uint8 image, label)`` dataset as resized float batches, in order, for one pass.

    Unlike the training pipeline it keeps no in-memory cache of the images, so one pass over a data set
    larger than memory streams through it.
    """
    import tensorflow as tf

    from transferkit.data.pipeline import resize

    ds = dataset.map(lambda x, y: (resize(x, image_size, resize_mode), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def indexed_batches(features, labels, batch_size):
    """Batches of rows of (possibly memory-mapped) arrays in order, read on demand, as a ``tf.data.Dataset``
    (training batches in the pipeline's shuffled order come from :func:`epoch_index`)."""
    import tensorflow as tf

    index = tf.data.Dataset.range(len(labels)).batch(batch_size)
    return index if features is None else gather(index, features, labels)


def epoch_index(labels, batch_size, seed):
    """Training batches of row indices as :class:`~transferkit.data.pipeline.EpochData`: epoch ``k`` in the order
    that :func:`~transferkit.data.pipeline.epoch_batches` shuffles the images of epoch ``k`` (same count, buffer
    and seed), so cached activations are seen in the batches the images would be, resumed or not.

    Example:
        >>> train = gather(epoch_index(labels, 32, seed=42), features, labels)
    """
    import tensorflow as tf

    from transferkit.data.pipeline import EpochData, epoch_seed

    count = len(labels)

    def make(epoch):
        return tf.data.Dataset.range(count).shuffle(4096, seed=epoch_seed(seed, epoch),
                                                    reshuffle_each_iteration=False).batch(batch_size)

    return EpochData(make, -(-count // batch_size))


def gather(index, features, labels):
    """Map batches of indices to ``(features[rows], labels[rows])`` batches, read from the arrays on demand;
    ``index`` is a dataset or :class:`~transferkit.data.pipeline.EpochData` (then so is the result)."""
    import tensorflow as tf

    from transferkit.data.pipeline import EpochData

    if isinstance(index, EpochData):
        return EpochData(lambda epoch: gather(index.make(epoch), features, labels), index.steps)

    dtype = tf.as_dtype(np.asarray(features[:0]).dtype)

    def rows(i):
        return np.asarray(features[i]), np.asarray(labels[i])

    def read(i):
        x, y = tf.numpy_function(rows, [i], (dtype, tf.as_dtype(labels.dtype)), stateful=False)
        x.set_shape((None, *features.shape[1:]))
        y.set_shape((None,))
        return x, y

    return index.map(read).prefetch(tf.data.AUTOTUNE)


def predictor(model):
    """``model(images, training=False)`` as a traced function: what ``predict_on_batch`` does, minus its
    splitting of the batch across the replicas of a ``tf.distribute`` strategy in scope (this runs whole
    batches on one device, which is what extracting features once needs)."""
    import tensorflow as tf

    call = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    return lambda images: call(images)
