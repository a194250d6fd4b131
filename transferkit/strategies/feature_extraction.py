"""Feature extraction: run the frozen conv base once, cache the features, fit a head on them."""
import keras

from transferkit.features import (cache_key, cached_extract, epoch_index, extraction_batches, gather, indexed_batches,
                                  predictor)
from transferkit.strategies.common import Trained, frozen_classifier, register_strategy
from transferkit.strategies.runtime import float32_model, is_mixed, precision
from transferkit.training.logistic import fit_logistic_stage
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


def head_features(ctx, model, base, stage):
    """``({"train": (features, labels), "val": ...}, cache hits)``: the frozen base's features of the training and
    validation images, for ``stage`` (a head stage) to fit the head on, through the feature cache.

    A head fitted as a logistic regression (``stage.fit == "logistic"``) is fitted on the features the saved
    float32 model computes, whatever the run's dtype policy: fitted to convergence on bfloat16 features, the
    demo's head chose a weakly regularised C that scored 0.907 on test through the float32 model, against 0.927
    fitted on float32 features. A trained head gets the features in the run's policy, as its training does.

    Example:
        >>> features, hits = head_features(ctx, model, base, recipe.feature_extraction.stages("head")[0])
        >>> features["train"][0].shape[1:] == base.output_shape[1:]
        True
    """
    extractor = extractor_of(model, base)
    in_float32 = stage.fit == "logistic" and is_mixed(extractor)
    if in_float32:
        extractor = float32_model(extractor, rebuild=True)  # a copy: the model itself keeps the run's policy
    with precision("float32" if in_float32 else None):  # the policy also keys the cache
        predict = predictor(extractor)  # one traced function for every split
        extracted = {split: extract_split(ctx, predict, split) for split in ("train", "val")}
    return {split: data for split, (data, _) in extracted.items()}, sum(hit for _, hit in extracted.values())


def train_head(ctx, head, stage, features):
    """The head stage on cached ``features`` (``{"train": (x, y), "val": (x, y)}``): trained by
    :func:`~transferkit.training.stage.train_stage` on their batches, or fitted as a logistic regression
    (``stage.fit == "logistic"``, :func:`~transferkit.training.logistic.fit_logistic_stage`). Returns its rows.

    Example:
        >>> rows = train_head(ctx, head, recipe.feature_extraction.stages("head")[0], {"train": ..., "val": ...})
    """
    if stage.fit == "logistic" and stage.epochs > 0:
        return fit_logistic_stage(ctx, head, stage, features["train"], features["val"])
    train, val = (feature_batches(ctx, *features[split], split) for split in ("train", "val"))
    return train_stage(ctx, head, stage, train, val)


def feature_batches(ctx, features, labels, split):
    """Batches of cached ``features``: the training split shuffled exactly as the image pipeline shuffles it,
    epoch by epoch (:func:`~transferkit.features.epoch_index`)."""
    batch_size = ctx.recipe.batch_size
    index = epoch_index(labels, batch_size, ctx.recipe.seed) if split == "train" else \
        indexed_batches(None, labels, batch_size)
    return gather(index, features, labels)


@register_strategy("feature_extraction", stage="head")
def feature_extraction(ctx):
    """Run the frozen conv base once, cache the features, fit a head on them (logistic or a trained dense one).

    With ``fit: logistic`` (the setting of the recipes for small sets: demo, demo_fashion, folder) the head is
    linear, fitted as a logistic regression to convergence on the features. The returned model chains
    preprocessing, base and the head, so it takes raw images.

    Example:
        >>> trained = feature_extraction(Context(load_recipe("demo"), splits))
    """
    stage, = ctx.recipe.feature_extraction.stages("head")
    model, base, head = frozen_classifier(ctx, linear=stage.fit == "logistic")
    ctx.model = model
    data, hits = head_features(ctx, model, base, stage)
    history = train_head(ctx, head, stage, data)
    return Trained(model, history, {"feature_cache_hits": hits})
