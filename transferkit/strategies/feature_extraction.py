"""Feature extraction: run the frozen conv base once, cache the features, train a dense head on them."""
import keras

from transferkit.features import (cache_key, cached_extract, epoch_index, extraction_batches, gather, indexed_batches,
                                  predictor)
from transferkit.strategies.common import Trained, frozen_classifier, register_strategy
from transferkit.training.stage import train_stage
from transferkit.weights import weights_id


def feature_key(ctx, split, boundary=None):
    """The cache key of ``split``'s conv-base outputs (or of the activations at layer ``boundary``)."""
    recipe = ctx.recipe
    parts = dict(backbone=recipe.backbone, weights=weights_id(recipe.weights), image_size=recipe.image_size,
                 base_blocks=recipe.base_blocks, resize=recipe.data.resize, data=ctx.splits.fingerprint, split=split)
    policy = keras.config.dtype_policy().name  # features computed under a mixed policy differ slightly
    if policy != "float32":
        parts["dtype_policy"] = policy
    return cache_key(**parts, **({"boundary": boundary} if boundary else {}))


def extract_split(ctx, predict, split, boundary=None):
    """``((features, labels), hit)`` of ``split`` through the feature cache; streamed to disk on a miss."""
    recipe = ctx.recipe
    batched = extraction_batches(ctx.splits.datasets[split], recipe.image_size, recipe.batch_size, recipe.data.resize)
    return cached_extract(feature_key(ctx, split, boundary), predict, batched)


def extractor_of(model, base):
    """Raw images -> ``model``'s preprocessing -> ``base`` (inference mode): the features a head trains on.

    Example:
        >>> model, base, _ = frozen_classifier(ctx)
        >>> extractor_of(model, base).output_shape == base.output_shape
        True
    """
    inputs = keras.Input(model.input.shape[1:])
    return keras.Model(inputs, base(model.get_layer("preprocess")(inputs), training=False))


def feature_batches(ctx, features, labels, split):
    """Batches of cached ``features``: the training split shuffled exactly as the image pipeline shuffles it,
    epoch by epoch (:func:`~transferkit.features.epoch_index`)."""
    batch_size = ctx.recipe.batch_size
    index = epoch_index(labels, batch_size, ctx.recipe.seed) if split == "train" else \
        indexed_batches(None, labels, batch_size)
    return gather(index, features, labels)


@register_strategy("feature_extraction", stage="head")
def feature_extraction(ctx):
    """Run the frozen conv base once, cache the features, train a dense head on them.

    The returned model chains preprocessing, base and the trained head, so it takes raw images.

    Example:
        >>> trained = feature_extraction(Context(load_recipe("demo"), splits))
    """
    config = ctx.recipe.feature_extraction
    model, base, head = frozen_classifier(ctx)
    ctx.model = model
    data, hits, predict = {}, 0, predictor(extractor_of(model, base))  # one traced function for every split
    for split in ("train", "val"):
        (features, labels), hit = extract_split(ctx, predict, split)
        data[split] = feature_batches(ctx, features, labels, split)
        hits += hit
    history = train_stage(ctx, head, config.stage("head"), data["train"], data["val"])
    return Trained(model, history, {"feature_cache_hits": hits})
