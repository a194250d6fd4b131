"""From scratch: a baseline network (AlexNet, VGG, GoogLeNet, the small convnet, LeNet) trained on the same data."""
import keras

from transferkit.baselines import BASELINES, create_baseline
from transferkit.strategies.common import Trained, register_strategy
from transferkit.training.auxiliary import AuxiliaryClassifiers
from transferkit.training.stage import train_stage


def scratch_models(baseline, size, num_classes):
    """``(model, trainer)`` for ``baseline`` on ``size`` x ``size`` RGB images (0-255): ``model`` rescales them to
    [0, 1] and runs the baseline (one softmax output; what a run saves); ``trainer`` is what trains it: ``model``
    itself, or for a baseline with auxiliary classifiers (GoogLeNet) an :class:`AuxiliaryClassifiers` sharing its
    layers.

    Example:
        >>> model, trainer = scratch_models("googlenet", 96, 10)
        >>> len(model.outputs), type(trainer).__name__
        (1, 'AuxiliaryClassifiers')
    """
    spec = BASELINES.get_or_raise(baseline)
    body = create_baseline(baseline, (size, size, 3), num_classes)
    inputs = keras.Input((size, size, 3), name="image")
    scaled = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    model = keras.Model(inputs, body(scaled), name=f"{baseline}_scratch")
    if spec.auxiliary is None:
        return model, model
    network = keras.Model(inputs, spec.auxiliary(body, num_classes)(scaled), name=f"{baseline}_auxiliary")
    return model, AuxiliaryClassifiers(network, spec.auxiliary_weight)


@register_strategy("scratch", stage="scratch", uses_backbone=False)
def scratch(ctx):
    """Train a baseline network from random weights on the same data (images rescaled to [0, 1]).

    The baseline is ``recipe.scratch.baseline``.

    Example:
        >>> trained = scratch(Context(load_recipe("demo", overrides=["scratch.baseline=lenet5"]), splits))
    """
    recipe, config = ctx.recipe, ctx.recipe.scratch
    model, trainer = scratch_models(config.baseline, recipe.image_size, ctx.splits.num_classes)
    ctx.model = model
    history = train_stage(ctx, trainer, config.stage("scratch"), ctx.data("train", augment=config.augment),
                          ctx.data("val"))
    return Trained(model, history, {"baseline": config.baseline})
