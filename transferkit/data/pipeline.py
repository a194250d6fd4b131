"""The tf.data pipeline: resize, cache, shuffle, batch, augment (training only), prefetch."""
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


def batches(dataset, image_size, batch_size, resize_mode="squash", shuffle_seed=None, augment=None):
    """Turn an unbatched ``(uint8 image, label)`` dataset into batches ready for ``fit``/``predict``.

    Decoded, resized images are cached in memory; ``shuffle_seed`` (training) reshuffles every epoch,
    deterministically; ``augment`` (a Keras layer) runs on training batches only, after its data-dependent
    layers (PCA colour) are adapted on these images, the training split (which also fills the cache).

    Example:
        >>> train = batches(splits.datasets["train"], 32, 64, shuffle_seed=42, augment=make_augmenter(cfg))
    """
    ds = dataset.map(lambda x, y: (resize(x, image_size, resize_mode), y), num_parallel_calls=AUTOTUNE)
    ds = ds.cache()
    if augment is not None:
        adapt(augment, ds.batch(256).map(lambda x, y: x))
    if shuffle_seed is not None:
        ds = ds.shuffle(4096, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
