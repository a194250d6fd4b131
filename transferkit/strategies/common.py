"""What every strategy shares: the run context, compiling, fitting stage by stage, the frozen classifier."""
from dataclasses import dataclass, field

import keras

from transferkit.backbones import BACKBONES
from transferkit.data.augment import make_augmenter
from transferkit.data.pipeline import batches
from transferkit.heads import build_classifier, build_head
from transferkit.registry import Registry
from transferkit.weights import build_base

STRATEGIES = Registry("strategy")


@dataclass
class Context:
    """Everything a strategy needs: the recipe, the data, and how loud to be.

    Example:
        >>> ctx = Context(recipe, splits)
        >>> trained = STRATEGIES["finetune"](ctx)
    """

    recipe: object
    splits: object
    verbose: int = 2
    callbacks: list = field(default_factory=list)

    @property
    def spec(self):
        """The recipe's backbone spec."""
        return BACKBONES.get_or_raise(self.recipe.backbone)

    def data(self, split, augment=False, image_size=None):
        """Batches of ``split``; training data is shuffled (seeded) and, with ``augment``, augmented."""
        recipe = self.recipe
        train = split == "train"
        return batches(
            self.splits.datasets[split], image_size or recipe.image_size, recipe.batch_size,
            resize_mode=recipe.data.resize,
            shuffle_seed=recipe.seed if train else None,
            augment=make_augmenter(recipe.augment, seed=recipe.seed) if (train and augment) else None,
        )


@dataclass
class Trained:
    """A strategy's result: the model that takes raw images, the per-epoch history, and facts for metrics."""

    model: keras.Model
    history: list
    info: dict = field(default_factory=dict)


def compile_model(model, learning_rate):
    """Compile for integer labels with Adam at ``learning_rate``."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def fit_stage(ctx, model, stage, train, val, epochs, start_epoch=0, **fit_kwargs):
    """``model.fit`` for one named stage; returns history rows ``{epoch, stage, loss, accuracy, ...}``.

    ``train`` is a batched dataset or an ``(x, y)`` tuple of arrays.
    """
    if epochs <= 0:
        return []
    x, y = train if isinstance(train, tuple) else (train, None)
    history = model.fit(x, y, validation_data=val, epochs=start_epoch + epochs, initial_epoch=start_epoch,
                        verbose=ctx.verbose, callbacks=list(ctx.callbacks), **fit_kwargs)
    rows = []
    for i in range(len(history.epoch)):
        row = {"epoch": start_epoch + i + 1, "stage": stage}
        row.update({k: float(v[i]) for k, v in history.history.items()})
        rows.append(row)
    return rows


def frozen_classifier(ctx):
    """The backbone with the recipe's weights, frozen, with a fresh head: ``(model, base, head)``."""
    recipe, spec = ctx.recipe, ctx.spec
    base = build_base(recipe.backbone, recipe.weights, recipe.image_size, recipe.base_blocks)
    base.trainable = False
    head = build_head(base.output_shape[1:], ctx.splits.num_classes, recipe.head)
    return build_classifier(base, spec.preprocess, head, recipe.image_size), base, head
