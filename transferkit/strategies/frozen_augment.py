"""Frozen base + augmentation: the conv base inside the model, frozen, the head trained end to end."""
from transferkit.strategies.common import Trained, frozen_classifier, register_strategy
from transferkit.training.stage import train_stage


@register_strategy("frozen_augment", stage="head")
def frozen_augment(ctx):
    """Frozen conv base inside the model, head trained end to end on augmented images.

    Example:
        >>> trained = frozen_augment(Context(load_recipe("demo"), splits))
    """
    config = ctx.recipe.frozen_augment
    model, _, _ = frozen_classifier(ctx)
    ctx.model = model
    history = train_stage(ctx, model, config.stage("head"), ctx.data("train", augment=config.augment),
                          ctx.data("val"))
    return Trained(model, history)
