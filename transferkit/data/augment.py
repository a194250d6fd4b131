"""The course's augmentations as Keras layers, run in the input pipeline on training batches only (never in a
saved or evaluated model): Chollet's flips, rotation, shifts, shear and zoom, and AlexNet's random crop and
PCA colour noise (Krizhevsky et al. 2012, section 4.1).
"""
import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="transferkit")
class RandomCropResize(keras.layers.Layer):
    """AlexNet's random crop: a random square window of ``fraction`` of each side, resized back to full size.

    AlexNet trained on random 224x224 crops of 256x256 images (``fraction`` 0.875); here the window is cut
    from the already resized image, so the model's input size does not change.

    Example:
        >>> RandomCropResize(0.875, seed=1)(np.zeros((2, 32, 32, 3), "float32"), training=True).shape
        TensorShape([2, 32, 32, 3])
    """

    def __init__(self, fraction, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
        self.fraction, self.seed = float(fraction), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or self.fraction == 1.0:
            return images
        count = tf.shape(images)[0]
        corner = keras.random.uniform((count, 2), 0.0, 1.0 - self.fraction, seed=self.seed_generator)
        boxes = tf.concat([corner, corner + self.fraction], axis=1)  # y1, x1, y2, x2, normalised
        cropped = tf.image.crop_and_resize(images, boxes, tf.range(count), tf.shape(images)[1:3])
        return tf.ensure_shape(cropped, images.shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction, "seed": self.seed}


@keras.saving.register_keras_serializable(package="transferkit")
class PCAColor(keras.layers.Layer):
    """AlexNet's colour augmentation: add ``sum_i alpha_i * lambda_i * p_i`` to every pixel of an image, with
    ``p_i, lambda_i`` the eigenvectors and eigenvalues of the training set's RGB covariance (pixels scaled to
    [0, 1]) and ``alpha_i ~ N(0, stddev)`` drawn once per image. Works on the 0-255 scale.

    :meth:`adapt` computes the eigen-decomposition once from training images (the pipeline does it).

    Example:
        >>> layer = PCAColor(0.1, seed=1)
        >>> layer.adapt(train_images)           # an array or a dataset of image batches
        >>> layer(images, training=True).shape == images.shape
        True
    """

    def __init__(self, stddev=0.1, eigenvalues=None, eigenvectors=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.stddev, self.seed = float(stddev), seed
        self.eigenvalues = None if eigenvalues is None else np.asarray(eigenvalues, np.float32).reshape(3)
        self.eigenvectors = None if eigenvectors is None else np.asarray(eigenvectors, np.float32).reshape(3, 3)
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def is_adapted(self):
        """True once the eigenvalues and eigenvectors are known."""
        return self.eigenvalues is not None

    def adapt(self, data):
        """Compute the RGB covariance's eigenvectors (columns) and eigenvalues, largest first, from ``data``:
        an array of images or an iterable (a dataset) of image batches, on the 0-255 scale."""
        batches = [data] if isinstance(data, np.ndarray) else data
        total, outer, count = np.zeros(3), np.zeros((3, 3)), 0
        for batch in batches:
            pixels = np.asarray(batch, np.float64).reshape(-1, 3) / 255.0
            total += pixels.sum(axis=0)
            outer += pixels.T @ pixels
            count += len(pixels)
        if not count:
            raise ValueError("PCAColor.adapt needs at least one image")
        mean = total / count
        values, vectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
        order = np.argsort(values)[::-1]
        self.eigenvalues = np.clip(values[order], 0, None).astype(np.float32)
        self.eigenvectors = vectors[:, order].astype(np.float32)

    def call(self, images, training=True):
        if not training or self.stddev == 0.0:
            return images
        if not self.is_adapted:
            raise ValueError("PCAColor needs adapt(training images) before it augments")
        alpha = keras.random.normal((tf.shape(images)[0], 3), stddev=self.stddev, seed=self.seed_generator)
        shift = tf.matmul(alpha * self.eigenvalues, self.eigenvectors, transpose_b=True) * 255.0
        return tf.clip_by_value(images + tf.cast(shift[:, None, None, :], images.dtype), 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed,
                "eigenvalues": None if self.eigenvalues is None else self.eigenvalues.tolist(),
                "eigenvectors": None if self.eigenvectors is None else self.eigenvectors.tolist()}


def make_augmenter(config, seed=None):
    """A ``keras.Sequential`` of random layers from an :class:`~transferkit.recipes.AugmentConfig`, or None.

    In order: random crop, flip, rotation (degrees; the book uses 40), shifts, shear, RandAugment and zoom
    (fractions, 0.2), PCA colour. A PCA colour layer needs :func:`adapt` on training images before use.

    Example:
        >>> augment = make_augmenter(AugmentConfig(rotation=40, zoom=0.2))
        >>> augment(images, training=True).shape == images.shape
        True
    """
    fill = config.fill_mode
    # the input pipeline works in float32 whatever the run's dtype policy (crop_and_resize has no bfloat16)
    common = {"seed": seed, "dtype": "float32"}
    steps = []
    if config.random_crop < 1:
        steps.append(RandomCropResize(config.random_crop, **common))
    if config.flip != "none":
        steps.append(keras.layers.RandomFlip(config.flip, **common))
    if config.rotation:
        steps.append(keras.layers.RandomRotation(config.rotation / 360.0, fill_mode=fill, **common))
    if config.width_shift or config.height_shift:
        steps.append(keras.layers.RandomTranslation(config.height_shift, config.width_shift, fill_mode=fill,
                                                    **common))
    if config.shear:
        steps.append(keras.layers.RandomShear(x_factor=config.shear, y_factor=config.shear, fill_mode=fill, **common))
    if config.rand_augment:  # two random operations per image at this strength (Cubuk et al. 2020)
        steps.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=config.rand_augment, **common))
    if config.zoom:
        steps.append(keras.layers.RandomZoom(config.zoom, fill_mode=fill, **common))
    if config.pca_color:
        steps.append(PCAColor(config.pca_color, **common))
    return keras.Sequential(steps, name="augment") if steps else None


def adapt(augmenter, images):
    """Fit the data-dependent layers (PCA colour) of an augmenter from :func:`make_augmenter` on training
    ``images``: an array or a dataset of image batches. Does nothing for an augmenter without such layers.

    Example:
        >>> adapt(make_augmenter(AugmentConfig(pca_color=0.1)), train_batches)
    """
    for layer in augmenter.layers:
        if isinstance(layer, PCAColor) and not layer.is_adapted:
            layer.adapt(images)
