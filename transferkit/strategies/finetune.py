"""Fine-tuning: train the head on the frozen base, then unfreeze the top conv blocks at a low learning rate."""
from transferkit.backbones import unfreeze_top_blocks
from transferkit.strategies.common import STRATEGIES, Trained, compile_model, fit_stage, frozen_classifier


@STRATEGIES.register("finetune")
def finetune(ctx):
    """Train the head on the frozen base, then unfreeze the top conv blocks at a low learning rate.

    Stage 1 ("head"): frozen base. Stage 2 ("finetune"): the top ``unfreeze_blocks`` blocks trainable except
    their BatchNorm layers (which stay in inference mode), recompiled at ``learning_rate``.

    Example:
        >>> trained = finetune(Context(load_recipe("demo", overrides=["finetune.unfreeze_blocks=2"]), splits))
    """
    config = ctx.recipe.finetune
    model, base, _ = frozen_classifier(ctx)
    ctx.model = model
    train, val = ctx.data("train", augment=config.augment), ctx.data("val")
    compile_model(model, config.head_learning_rate)
    history = fit_stage(ctx, model, "head", train, val, config.head_epochs)
    unfrozen = unfreeze_top_blocks(base, ctx.spec, config.unfreeze_blocks)
    compile_model(model, config.learning_rate)
    history += fit_stage(ctx, model, "finetune", train, val, config.epochs, start_epoch=len(history))
    return Trained(model, history, {"unfrozen_layers": unfrozen})
