"""MixUp and CutMix of training batches, images or cached features alike, with soft labels.

Keras has both as layers (``keras.layers.MixUp``, ``keras.layers.CutMix``), but they mix 4-D images only and
draw from a stateful generator. Here each batch's draw is a stateless function of the seed, the epoch and the
batch's index, so a resumed run mixes epoch ``k`` as an uninterrupted one does, and MixUp also mixes the 2-D
features the feature-extraction path trains on. One batch is mixed one way (timm's ``mode='batch'``); with
both on, each batch takes one of the two at even odds (timm's ``switch_prob=0.5``).
"""
import tensorflow as tf

from transferkit.data.pipeline import EpochData, epoch_seed


def _beta(alpha, seed):
    """One draw of Beta(alpha, alpha) from two stateless Gamma draws."""
    a = tf.random.stateless_gamma([], seed=seed, alpha=alpha)
    b = tf.random.stateless_gamma([], seed=seed + [0, 1], alpha=alpha)
    return a / (a + b)


def mix_batch(x, y, num_classes, seed, mixup=0.0, cutmix=0.0):
    """``(x, y)`` with each example mixed with another of the batch; ``y`` becomes soft labels summing to one.

    ``seed`` is a stateless seed (two int64), ``mixup`` and ``cutmix`` the alpha of each Beta draw (0: off).
    CutMix needs 4-D batches (images or feature maps); 2-D batches only take MixUp.

    Example:
        >>> x, y = mix_batch(images, labels, 10, tf.constant([1, 2], tf.int64), mixup=0.2)
        >>> y.shape
        TensorShape([32, 10])
    """
    seed = tf.cast(seed, tf.int64)
    soft = tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)
    order = tf.argsort(tf.random.stateless_uniform([tf.shape(x)[0]], seed=seed + [0, 2]))
    other_x, other_y = tf.gather(x, order), tf.gather(soft, order)
    spatial = len(x.shape) == 4 and cutmix > 0

    def do_mixup():
        lam = _beta(mixup, seed + [0, 3])
        return tf.cast(lam, x.dtype) * x + tf.cast(1 - lam, x.dtype) * other_x, lam

    def do_cutmix():
        lam = _beta(cutmix, seed + [0, 4])
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        cut = tf.sqrt(1.0 - lam)
        cut_h = tf.cast(tf.cast(height, tf.float32) * cut, tf.int32)
        cut_w = tf.cast(tf.cast(width, tf.float32) * cut, tf.int32)
        centre = tf.random.stateless_uniform([2], seed=seed + [0, 5])
        cy = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
        cx = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
        top, bottom = tf.clip_by_value(cy - cut_h // 2, 0, height), tf.clip_by_value(cy + cut_h // 2, 0, height)
        left, right = tf.clip_by_value(cx - cut_w // 2, 0, width), tf.clip_by_value(cx + cut_w // 2, 0, width)
        rows, cols = tf.range(height), tf.range(width)
        inside = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))[None, :]
        mask = tf.cast(inside, x.dtype)[None, :, :, None]
        area = tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
        return x * (1 - mask) + other_x * mask, 1.0 - area

    if spatial and mixup > 0:
        use_cutmix = tf.random.stateless_uniform([], seed=seed + [0, 6]) < 0.5
        mixed, lam = tf.cond(use_cutmix, do_cutmix, do_mixup)
    elif spatial:
        mixed, lam = do_cutmix()
    elif mixup > 0:
        mixed, lam = do_mixup()
    else:
        return x, soft
    return mixed, lam * soft + (1.0 - lam) * other_y


def mixes(config, rank):
    """True if the recipe's ``augment`` section mixes batches of this rank (MixUp any, CutMix 4-D only)."""
    return config.mixup > 0 or (config.cutmix > 0 and rank == 4)


def mixed(data, num_classes, seed, mixup=0.0, cutmix=0.0):
    """:class:`~transferkit.data.pipeline.EpochData` whose batches are mixed by :func:`mix_batch`, each batch's
    draw a function of ``seed``, the epoch and the batch's index.

    Example:
        >>> train = mixed(ctx.data("train"), splits.num_classes, seed=42, mixup=0.2)
    """
    def make(epoch):
        first = tf.constant(epoch_seed(seed + 2, epoch), tf.int64)
        return data.make(epoch).enumerate().map(
            lambda i, batch: mix_batch(batch[0], batch[1], num_classes, tf.stack([first, i * 8]), mixup, cutmix))

    return EpochData(make, data.steps)
