"""Classifier heads and the model that puts one on a conv base."""
import keras

from transferkit.layers import Preprocess

POOLING = {
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
    "flatten": keras.layers.Flatten,
}


def build_head(feature_shape, num_classes, config):
    """A dense classifier over conv features, fastai style: pooling, [BatchNorm], Dropout(p/2),
    Dense(units, relu), [BatchNorm], Dropout(p), Dense(softmax).

    BatchNorm (``config.batchnorm``, on by default; momentum 0.9 so its statistics settle within the few
    steps of a small data set) standardises the raw conv features, whose scale differs
    by backbone and weights, so one learning rate suits every backbone. The softmax runs in float32 even
    under mixed precision.

    Example:
        >>> head = build_head((4, 4, 512), 2, HeadConfig(pooling="flatten", units=256, dropout=0.5))
        >>> head.output_shape
        (None, 2)
    """
    layers = keras.layers
    inputs = keras.Input(feature_shape, name="features")
    x = POOLING[config.pooling](name="pool")(inputs)
    if config.units:
        if config.batchnorm:
            x = layers.BatchNormalization(momentum=0.9, name="features_bn")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout / 2, name="features_dropout")(x)
        x = layers.Dense(config.units, activation="relu", name="fc")(x)
    if config.batchnorm:
        x = layers.BatchNormalization(momentum=0.9, name="fc_bn")(x)
    if config.dropout:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(base, preprocess, head, image_size):
    """Raw RGB images (0-255) -> preprocessing -> conv base (inference mode) -> head.

    The base is called with ``training=False`` (the Keras idiom); BatchNorm layers stay in inference mode
    during fine-tuning because :func:`~transferkit.backbones.unfreeze_top_blocks` never unfreezes them.

    Example:
        >>> model = build_classifier(base, "caffe", head, 224)
        >>> model.predict(uint8_images).shape
        (n, num_classes)
    """
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = Preprocess(preprocess, name="preprocess")(inputs)
    x = base(x, training=False)
    return keras.Model(inputs, head(x), name=f"{base.name}_classifier")
