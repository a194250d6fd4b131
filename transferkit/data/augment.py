"""The course's augmentations as Keras preprocessing layers, run in the input pipeline (never in a saved model)."""
import keras


def make_augmenter(config, seed=None):
    """A ``keras.Sequential`` of random layers from an :class:`~transferkit.recipes.AugmentConfig`, or None.

    Rotation is in degrees (the book uses 40); shifts, shear and zoom are fractions (0.2).

    Example:
        >>> augment = make_augmenter(AugmentConfig(rotation=40, zoom=0.2))
        >>> augment(images, training=True).shape == images.shape
        True
    """
    fill = config.fill_mode
    steps = []
    if config.flip != "none":
        steps.append(keras.layers.RandomFlip(config.flip, seed=seed))
    if config.rotation:
        steps.append(keras.layers.RandomRotation(config.rotation / 360.0, fill_mode=fill, seed=seed))
    if config.width_shift or config.height_shift:
        steps.append(keras.layers.RandomTranslation(config.height_shift, config.width_shift, fill_mode=fill,
                                                    seed=seed))
    if config.shear:
        steps.append(keras.layers.RandomShear(x_factor=config.shear, y_factor=config.shear, fill_mode=fill,
                                              seed=seed))
    if config.zoom:
        steps.append(keras.layers.RandomZoom(config.zoom, fill_mode=fill, seed=seed))
    return keras.Sequential(steps, name="augment") if steps else None
