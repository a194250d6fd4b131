"""What every strategy shares: the registry of strategy specs, the run context, the frozen classifier."""
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

import keras

from transferkit.backbones import BACKBONES
from transferkit.data.augment import make_augmenter
from transferkit.data.balance import class_weights
from transferkit.data.pipeline import batches, epoch_batches
from transferkit.data.sources import class_counts
from transferkit.heads import build_classifier, build_head
from transferkit.registry import Registry
from transferkit.runs import RunTracker
from transferkit.weights import build_base

STRATEGIES = Registry("strategy")


@dataclass(frozen=True)
class StrategySpec:
    """What the rest of transferkit knows about a strategy, so that no code names strategies.

    Args:
        name: the registry name, which is also the recipe section holding its settings.
        train: ``train(ctx) -> Trained``.
        stage: the name of its (first) stage, as history.csv and the backups call it.
        uses_backbone: False for a network trained from scratch (a baseline), True for the transfer strategies.
        description: one line for ``transferkit list strategies`` and the CLI help.

    Example:
        >>> STRATEGIES["finetune"].rate_keys(recipe)
        ('learning_rate', 'head_learning_rate')
    """

    name: str
    train: Callable
    stage: str
    uses_backbone: bool = True
    description: str = ""

    def section(self, recipe):
        """The recipe section of this strategy's settings."""
        return recipe.section(self.name)

    def stages(self, recipe):
        """The :class:`~transferkit.recipes.Stage` objects this strategy trains for ``recipe``, in order."""
        return self.section(recipe).stages(self.stage)

    def rate_keys(self, recipe):
        """The keys of this strategy's section that are learning rates."""
        return tuple(key for key in type(self.section(recipe)).model_fields if key.endswith("learning_rate"))


def register_strategy(name, stage, uses_backbone=True):
    """Register the decorated ``train(ctx)`` function as strategy ``name`` (its docstring's first line describes it).

    Example:
        >>> @register_strategy("frozen_augment", stage="head")
        ... def frozen_augment(ctx): ...
    """
    def decorator(train):
        description = (train.__doc__ or "").strip().partition("\n")[0]
        STRATEGIES.register(name, StrategySpec(name, train, stage, uses_backbone, description))
        return train

    return decorator


@dataclass
class Context:
    """Everything a strategy needs: the recipe, the data, how loud to be, and the run being tracked.

    With a ``tracker`` every stage is checkpointed each epoch and resumes where it stopped. Strategies set
    ``model`` to the full classifier as soon as it exists, so a failed run can still save it.

    Example:
        >>> ctx = Context(recipe, splits)
        >>> trained = STRATEGIES["finetune"].train(ctx)
    """

    recipe: object
    splits: object
    verbose: int = 2
    callbacks: list = field(default_factory=list)
    tracker: Optional[RunTracker] = None
    model: Optional[keras.Model] = None
    stage_log: list = field(default_factory=list)
    find_rate_for: Optional[str] = None  # a stage name: run its learning-rate range test, then stop (lr-find)
    sweep: tuple = (1e-7, 10.0)  # the rates a range test sweeps (lr-find, learning_rate auto)

    @property
    def spec(self):
        """The recipe's backbone spec."""
        return BACKBONES.get_or_raise(self.recipe.backbone)

    @cached_property
    def class_weight(self):
        """The recipe's ``data.class_weight`` as ``{class index: weight}`` for ``fit``, or None (all weigh 1)."""
        setting = self.recipe.data.class_weight
        counts = class_counts(self.splits, "train") if setting == "auto" else None
        return class_weights(setting, self.splits.class_names, counts)

    def data(self, split, augment=False, image_size=None):
        """Batches of ``split``. Training data is :class:`~transferkit.data.pipeline.EpochData`: each epoch
        shuffled and, with ``augment``, augmented from the seed and the epoch's index alone."""
        recipe = self.recipe
        size = image_size or recipe.image_size
        if split == "train":
            augmenter = make_augmenter(recipe.augment, seed=recipe.seed) if augment else None
            return epoch_batches(self.splits.datasets[split], self.splits.counts[split], size, recipe.batch_size,
                                 recipe.data.resize, seed=recipe.seed, augment=augmenter)
        return batches(self.splits.datasets[split], size, recipe.batch_size, resize_mode=recipe.data.resize)


@dataclass
class Trained:
    """A strategy's result: the model that takes raw images, the per-epoch history, and facts for metrics."""

    model: keras.Model
    history: list
    info: dict = field(default_factory=dict)


def frozen_classifier(ctx, linear=False):
    """The backbone with the recipe's weights, frozen, with a fresh head: ``(model, base, head)``; with
    ``linear``, the head is the recipe's pooling and the softmax layer alone (a head fitted as a logistic regression).
    """
    recipe, spec = ctx.recipe, ctx.spec
    base = build_base(recipe.backbone, recipe.weights, recipe.image_size, recipe.base_blocks)
    base.trainable = False
    config = recipe.head.model_copy(update={"units": 0, "batchnorm": False, "dropout": 0.0}) if linear else recipe.head
    head = build_head(base.output_shape[1:], ctx.splits.num_classes, config)
    return build_classifier(base, spec.preprocess, head, recipe.image_size), base, head
