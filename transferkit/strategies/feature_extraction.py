"""Feature extraction: run the frozen conv base once, cache the features, train a dense head on them."""
import keras

from transferkit.features import cache_key, cached_features, extract
from transferkit.strategies.common import STRATEGIES, Trained, compile_model, fit_stage, frozen_classifier
from transferkit.weights import weights_id


@STRATEGIES.register("feature_extraction")
def feature_extraction(ctx):
    """Run the frozen conv base once, cache the features, train a dense head on them.

    The returned model chains preprocessing, base and the trained head, so it takes raw images.

    Example:
        >>> trained = feature_extraction(Context(load_recipe("demo"), splits))
    """
    recipe, config = ctx.recipe, ctx.recipe.feature_extraction
    model, base, head = frozen_classifier(ctx)
    ctx.model = model
    inputs = keras.Input(model.input.shape[1:])
    extractor = keras.Model(inputs, base(model.get_layer("preprocess")(inputs), training=False))
    features, hits = {}, 0
    for split in ("train", "val"):
        key = cache_key(backbone=recipe.backbone, weights=weights_id(recipe.weights), image_size=recipe.image_size,
                        base_blocks=recipe.base_blocks, resize=recipe.data.resize, data=ctx.splits.fingerprint,
                        split=split)
        features[split], hit = cached_features(key, lambda: extract(extractor, ctx.data(split)))
        hits += hit
    compile_model(head, config.learning_rate)
    history = fit_stage(ctx, head, "head", features["train"], features["val"], config.epochs, batch_size=recipe.batch_size)
    return Trained(model, history, {"feature_cache_hits": hits})
