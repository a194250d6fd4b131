"""Frozen base + augmentation: the conv base inside the model, frozen, the head trained end to end."""
from transferkit.strategies.common import STRATEGIES, Trained, compile_model, fit_stage, frozen_classifier


@STRATEGIES.register("frozen_augment")
def frozen_augment(ctx):
    """Frozen conv base inside the model, head trained end to end on augmented images.

    Example:
        >>> trained = frozen_augment(Context(load_recipe("demo"), splits))
    """
    config = ctx.recipe.frozen_augment
    model, _, _ = frozen_classifier(ctx)
    ctx.model = model
    compile_model(model, config.learning_rate, jit_compile=ctx.recipe.jit_compile)
    history = fit_stage(ctx, model, "head", ctx.data("train", augment=config.augment), ctx.data("val"),
                        config.epochs)
    return Trained(model, history)
