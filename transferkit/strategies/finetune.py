"""Fine-tuning: train the head on the frozen base, then unfreeze the top conv blocks at a low learning rate."""
import keras

from transferkit.backbones import block_rates, unfreeze_top_blocks
from transferkit.features import cached_extract, epoch_index, gather, indexed_batches, predictor
from transferkit.strategies.common import Trained, frozen_classifier, register_strategy
from transferkit.strategies.runtime import is_mixed
from transferkit.strategies.feature_extraction import extract_split, feature_key, head_features, train_head
from transferkit.training.stage import train_stage


def freeze_boundary(base, spec, num_blocks):
    """The name of the last frozen layer of ``base`` when its top ``num_blocks`` blocks train, or None.

    None when the whole base trains (nothing frozen to cache) or ``num_blocks`` is out of range; the base's
    output layer when no block trains.
    """
    names = [layer.name for layer in base.layers]
    ends = [end for end in spec.block_ends if end in names]
    if not 0 <= num_blocks < len(ends):
        return None
    return names[-1] if num_blocks == 0 else ends[-num_blocks - 1]


@register_strategy("finetune", stage="finetune")
def finetune(ctx, boundary_cache=None):
    """Train the head on the frozen base, then unfreeze the top conv blocks at a low learning rate.

    Stage 1 ("head"): frozen base. Stage 2 ("finetune"): the top ``unfreeze_blocks`` blocks trainable except
    their BatchNorm layers (which stay in inference mode), recompiled at ``learning_rate``; with
    ``layer_decay`` < 1 each block lower down trains at that factor of the rate above it. With
    ``unfreeze_schedule`` stage 2 is one stage per milestone (``finetune``, ``finetune-2``, ...), each unfreezing
    more blocks.

    Without augmentation (``finetune.augment: false``) the frozen part sees the same images every epoch, so
    by default (``boundary_cache=None``) its outputs are computed once per split and cached: stage 1 trains
    the head on the base's outputs, stage 2 the unfrozen blocks and the head on the activations at the freeze
    boundary, in the same batches and order as training on the images would. The layers are shared with the
    full model, which is returned and takes raw images. ``boundary_cache=False`` always trains on images.

    Example:
        >>> trained = finetune(Context(load_recipe("demo", overrides=["finetune.unfreeze_blocks=2"]), splits))
    """
    config = ctx.recipe.finetune
    head_stage, *stages = config.stages()
    model, base, head = frozen_classifier(ctx, linear=head_stage.fit == "logistic")
    ctx.model = model
    boundary = freeze_boundary(base, ctx.spec, config.max_unfrozen())
    if boundary is not None and not config.augment and boundary_cache is not False:
        return _on_cached_activations(ctx, model, base, head, boundary, head_stage, stages)
    train, val = ctx.data("train", augment=config.augment), ctx.data("val")
    if head_stage.fit == "logistic":  # fitted on the base's features of the images as they are
        history = train_head(ctx, head, head_stage, head_features(ctx, model, base, head_stage)[0])
    else:
        history = train_stage(ctx, model, head_stage, train, val)
    history, unfrozen = _fine_tune(ctx, model, base, stages, train, val, history)
    return Trained(model, history, {"unfrozen_layers": unfrozen, "boundary_cache": None})


def _fine_tune(ctx, model, base, stages, train, val, history):
    """Stage 2, milestone by milestone: unfreeze, then train at the stage's rates; ``(history, unfrozen names)``."""
    unfrozen = []
    for stage in stages:
        unfrozen = unfreeze_top_blocks(base, ctx.spec, stage.unfreeze_blocks)
        rates = block_rates(base, ctx.spec, stage.unfreeze_blocks, ctx.recipe.finetune.layer_decay)
        history = history + train_stage(ctx, model, stage, train, val, start_epoch=len(history), multipliers=rates,
                                        carry_best=True)
    return history, unfrozen


def _on_cached_activations(ctx, model, base, head, boundary, head_stage, stages):
    recipe = ctx.recipe
    at_output = boundary == base.layers[-1].name
    boundary_tensor = base.get_layer(boundary).output
    upper = None if at_output else keras.Model(boundary_tensor, base.output, name=f"{base.name}_top")
    inputs = keras.Input(model.input.shape[1:])
    bottom = keras.Model(base.input, boundary_tensor, name=f"{base.name}_bottom")
    extractor = keras.Model(inputs, bottom(model.get_layer("preprocess")(inputs), training=False))
    hits, stage1, stage2 = 0, {}, {}  # the head's features, and the boundary activations' batches
    predict_bottom, predict_top = predictor(extractor), upper and predictor(upper)  # traced once, every split
    float32_head = head_stage.fit == "logistic" and is_mixed(model)  # fitted on float32 features: head_features
    for split in ("train", "val"):
        (activations, labels), hit = extract_split(ctx, predict_bottom, split, None if at_output else boundary)
        hits += hit
        if at_output:
            stage1[split] = activations, labels
        elif not float32_head:  # the base's outputs from the boundary activations: only the top blocks run
            in_order = gather(indexed_batches(None, labels, recipe.batch_size), activations, labels)
            stage1[split], hit = cached_extract(feature_key(ctx, split), predict_top, in_order)
            hits += hit
        # epoch k's order depends on the seed and k alone, in both stages (epochs are counted across stages)
        index = epoch_index(labels, recipe.batch_size, recipe.seed) if split == "train" else \
            indexed_batches(None, labels, recipe.batch_size)
        stage2[split] = gather(index, activations, labels)
    if float32_head:
        stage1, hit = head_features(ctx, model, base, head_stage)
        hits += hit
    history = train_head(ctx, head, head_stage, stage1)
    if at_output:
        top = head
    else:
        x = keras.Input(boundary_tensor.shape[1:], name="boundary")
        top = keras.Model(x, head(upper(x, training=False)), name="top")
    history, unfrozen = _fine_tune(ctx, top, base, stages, stage2["train"], stage2["val"], history)
    return Trained(model, history, {"unfrozen_layers": unfrozen, "boundary_cache": boundary,
                                    "feature_cache_hits": hits})
