"""From scratch: a baseline network (AlexNet, VGG, the small convnet, LeNet) trained on the same data."""
import keras

from transferkit.baselines import create_baseline
from transferkit.strategies.common import Trained, register_strategy
from transferkit.training.stage import train_stage


@register_strategy("scratch", stage="scratch", uses_backbone=False)
def scratch(ctx):
    """Train a baseline network from random weights on the same data (images rescaled to [0, 1]).

    The baseline is ``recipe.scratch.baseline``.

    Example:
        >>> trained = scratch(Context(load_recipe("demo", overrides=["scratch.baseline=lenet5"]), splits))
    """
    recipe, config = ctx.recipe, ctx.recipe.scratch
    size = recipe.image_size
    body = create_baseline(config.baseline, (size, size, 3), ctx.splits.num_classes)
    inputs = keras.Input((size, size, 3), name="image")
    model = keras.Model(inputs, body(keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)),
                        name=f"{config.baseline}_scratch")
    ctx.model = model
    history = train_stage(ctx, model, config.stage("scratch"), ctx.data("train", augment=config.augment),
                          ctx.data("val"))
    return Trained(model, history, {"baseline": config.baseline})
