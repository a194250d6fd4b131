"""The tf.data pipeline: resize, cache, shuffle, batch, augment (training only), prefetch."""
import math
from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from transferkit.data.augment import adapt

RESIZE_MODES = ("squash", "crop", "pad")
AUTOTUNE = tf.data.AUTOTUNE


def resize(image, size, mode="squash"):
    """Resize one RGB image to ``size`` x ``size`` as float32 on the 0-255 scale.

    ``squash`` stretches, ``crop`` cuts the central square first, ``pad`` pads to a square first.

    Example:
        >>> resize(tf.zeros((28, 40, 3), tf.uint8), 32, "crop").shape
        TensorShape([32, 32, 3])
    """
    image = tf.cast(image, tf.float32)
    if mode == "crop":
        side = tf.minimum(tf.shape(image)[0], tf.shape(image)[1])
        image = tf.image.resize_with_crop_or_pad(image, side, side)
    elif mode == "pad":
        side = tf.maximum(tf.shape(image)[0], tf.shape(image)[1])
        image = tf.image.resize_with_crop_or_pad(image, side, side)
    return tf.image.resize(image, (size, size))


def batches(dataset, image_size, batch_size, resize_mode="squash"):
    """Turn an unbatched ``(uint8 image, label)`` dataset into resized batches, in order, for evaluation and
    prediction (training batches come from :func:`epoch_batches`). Decoded, resized images are cached in memory.

    Example:
        >>> val = batches(splits.datasets["val"], 32, 64)
    """
    ds = dataset.map(lambda x, y: (resize(x, image_size, resize_mode), y), num_parallel_calls=AUTOTUNE)
    return ds.cache().batch(batch_size).prefetch(AUTOTUNE)


def epoch_seed(seed, epoch):
    """The seed of epoch ``epoch`` (0-based, counted across a run's stages): a function of both and nothing else,
    so a resumed run draws epoch ``k``'s order and augmentation as an uninterrupted run does.

    Example:
        >>> epoch_seed(42, 3) == epoch_seed(42, 3) != epoch_seed(42, 4)
        True
    """
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2_147_483_647


@dataclass(frozen=True)
class EpochData:
    """Training batches whose every epoch is a pure function of the seed and the epoch's index.

    ``make(epoch)`` (a Python int) returns that epoch's batches; ``steps`` is their number. :meth:`epochs`
    chains the epochs from any epoch on, which is how a resumed stage continues exactly where an uninterrupted
    one would be. (The epochs are chained in Python, not with ``flat_map``: a shuffle seed that is a tensor
    breaks TensorFlow's seed check when the global seed is 0.)

    Example:
        >>> data = epoch_batches(splits.datasets["train"], splits.counts["train"], 32, 16, seed=42)
        >>> first_batch_of_epoch_3 = next(iter(data.epochs(3, 4)))
    """

    make: Callable
    steps: int

    def epochs(self, first, end):
        """The batches of epochs ``first`` to ``end - 1``, one epoch after the other."""
        chained = self.make(int(first))
        for epoch in range(int(first) + 1, int(end)):
            chained = chained.concatenate(self.make(epoch))
        return chained.prefetch(AUTOTUNE)


def seed_generators(model):
    """The random generators (``keras.random.SeedGenerator``) of every layer of ``model``: augmentation, dropout.

    Keras keeps them in the private ``Layer._seed_generators``; a test fails if that moves.
    """
    return [g for layer in model._flatten_layers() for g in getattr(layer, "_seed_generators", [])]


def reseeded(augment, seed, epoch):
    """A function that augments ``(index_in_epoch, (images, labels))``, resetting ``augment``'s random
    generators to the epoch's seed at the epoch's first batch (run it in order: ``map`` without parallel calls)."""
    generators = seed_generators(augment)

    def apply(i, batch):
        images, labels = batch
        state = tf.constant([epoch_seed(seed, epoch), 0], tf.int64)
        resets = []
        for generator in generators:
            variable = generator.state
            resets.append(variable.assign(tf.where(i == 0, tf.cast(state, variable.dtype), variable.value)))
        with tf.control_dependencies([r for r in resets if isinstance(r, (tf.Tensor, tf.Operation))]):
            images = tf.identity(images)
        return augment(images, training=True), labels

    return apply


def epoch_batches(dataset, count, image_size, batch_size, resize_mode="squash", seed=0, augment=None):
    """Training batches as :class:`EpochData`: epoch ``k`` is shuffled with :func:`epoch_seed` ``(seed, k)`` and,
    with ``augment``, augmented from that seed too, so it does not depend on how many epochs this process ran.
    ``count`` is the number of examples in ``dataset``.

    Decoded, resized images are cached in memory once for all epochs; ``augment``'s data-dependent layers (PCA
    colour) are adapted on them first.

    Example:
        >>> data = epoch_batches(splits.datasets["train"], splits.counts["train"], 32, 64, seed=42)
        >>> model.fit(data.epochs(0, 5), steps_per_epoch=data.steps, epochs=5)
    """
    cached = dataset.map(lambda x, y: (resize(x, image_size, resize_mode), y), num_parallel_calls=AUTOTUNE).cache()
    if augment is not None:
        adapt(augment, cached.batch(256).map(lambda x, y: x))

    def make(epoch):
        ds = cached.shuffle(4096, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False).batch(batch_size)
        return ds if augment is None else ds.enumerate().map(reseeded(augment, seed, epoch))

    return EpochData(make, math.ceil(count / batch_size))
