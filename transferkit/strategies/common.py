"""What every strategy shares: the run context, compiling, fitting stage by stage, the frozen classifier."""
import contextlib
import json
import math
import signal
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import keras
import numpy as np

from transferkit.backbones import BACKBONES
from transferkit.data.augment import make_augmenter
from transferkit.data.balance import class_weights
from transferkit.data.pipeline import EpochData, batches, epoch_batches, epoch_seed, seed_generators
from transferkit.data.sources import class_counts
from transferkit.errors import TransferkitError
from transferkit.heads import build_classifier, build_head
from transferkit.registry import Registry
from transferkit.runs import RunTracker, checkpoint_callbacks
from transferkit.strategies.optimizer import adam
from transferkit.weights import build_base

STRATEGIES = Registry("strategy")


@dataclass
class Context:
    """Everything a strategy needs: the recipe, the data, how loud to be, and the run being tracked.

    With a ``tracker`` every stage is checkpointed each epoch and resumes where it stopped. Strategies set
    ``model`` to the full classifier as soon as it exists, so a failed run can still save it.

    Example:
        >>> ctx = Context(recipe, splits)
        >>> trained = STRATEGIES["finetune"](ctx)
    """

    recipe: object
    splits: object
    verbose: int = 2
    callbacks: list = field(default_factory=list)
    tracker: Optional[RunTracker] = None
    model: Optional[keras.Model] = None

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


def compile_model(model, learning_rate, jit_compile=False, steps_per_execution=1):
    """Compile for integer labels with Adam at ``learning_rate`` (fused: :func:`adam`); ``jit_compile`` compiles
    the steps with XLA.

    Under the ``mixed_float16`` policy Keras wraps the optimizer in a ``LossScaleOptimizer`` itself.
    """
    model.compile(
        optimizer=adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=bool(jit_compile),
        steps_per_execution=steps_per_execution,
    )


class NonFiniteLoss(TransferkitError):
    """The loss became NaN or infinite; the model holds the weights of the last good epoch."""


class _NanGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss and put back the weights of the last completed epoch.

    It runs before BackupAndRestore at each epoch end, so the backup never holds broken weights.
    """

    def on_train_begin(self, logs=None):
        self.good, self.bad = None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.good is None:  # after every on_train_begin, so after BackupAndRestore restored a resumed stage
            self.good = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.bad is None and loss is not None and not math.isfinite(float(loss)):
            self.bad = (self.epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.bad is None:
            self.good = self.model.get_weights()
        else:
            self.model.set_weights(self.good)


_interrupted = threading.Event()


@contextlib.contextmanager
def interruptible():
    """Inside the block, Ctrl-C raises ``KeyboardInterrupt`` as usual and is also remembered, so that an
    interrupt Python drops (one raised inside a finalizer, where exceptions are only printed) still stops
    training at the next batch (:class:`_StopOnInterrupt`). Left as it is outside the main thread or when
    the program has its own SIGINT handler.

    Example:
        >>> with interruptible():
        ...     trained = STRATEGIES["finetune"](ctx)
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    def handler(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    _interrupted.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupted.clear()


class _StopOnInterrupt(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` at the first batch end after a Ctrl-C that did not stop training itself."""

    def _check(self, *args, **kwargs):
        if _interrupted.is_set():
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check


def resume_epoch(tracker, stage, start_epoch):
    """The epoch (0-based, counted across stages) that ``stage`` continues at: the one after its last backup, as
    ``keras.callbacks.BackupAndRestore`` will restore it, else ``start_epoch``.

    Example:
        >>> resume_epoch(tracker, "finetune", 5)   # 7 after a kill during the stage's third epoch
    """
    metadata = tracker.backup_dir(stage) / "training_metadata.json" if tracker else None
    if metadata is None or not metadata.is_file():
        return start_epoch
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (OSError, ValueError, KeyError) as err:
        raise TransferkitError(f"the backup of stage '{stage}' is unreadable ({metadata}): {err}") from None


class _Reseed(keras.callbacks.Callback):
    """At each epoch's start, reset the model's random generators (dropout) to the seed and the epoch's index,
    so epoch ``k`` drops the same units whether the run went straight through or was resumed."""

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        state = np.array([epoch_seed(self.seed + 1, epoch), 0])
        for generator in seed_generators(self.model):
            generator.state.assign(state.astype(generator.state.dtype))


def fit_stage(ctx, model, stage, train, val, epochs, start_epoch=0, class_weight=None, **fit_kwargs):
    """``model.fit`` for one named stage; returns history rows ``{epoch, stage, loss, accuracy, ...}``.

    ``train`` is :class:`~transferkit.data.pipeline.EpochData` (each epoch's batches a function of the seed and
    the epoch, and the model's dropout reseeded the same way, so a resumed stage trains exactly as an
    uninterrupted one), a batched dataset or an ``(x, y)`` tuple of arrays. With a tracker the stage is
    checkpointed every epoch, and a resumed run restores it (a finished stage takes no epochs at all).
    A NaN or infinite loss stops training with :class:`NonFiniteLoss`, keeping the last good weights.
    ``class_weight`` (``{index: weight}``) defaults to the recipe's ``data.class_weight``
    (:attr:`Context.class_weight`).
    """
    if epochs <= 0:
        return []
    seeds = []
    if isinstance(train, EpochData):  # epoch k's batches, from the epoch the stage (re)starts at
        x, y = train.epochs(resume_epoch(ctx.tracker, stage, start_epoch), start_epoch + epochs), None
        fit_kwargs["steps_per_epoch"] = train.steps
        seeds = [_Reseed(ctx.recipe.seed)]
    else:
        x, y = train if isinstance(train, tuple) else (train, None)
    fit_kwargs.setdefault("shuffle", y is not None)  # datasets come shuffled from the pipeline
    guard = _NanGuard()
    # the interrupt check runs last, so an epoch that ended is checkpointed before it stops the run
    callbacks = [guard, *seeds, *ctx.callbacks, *(checkpoint_callbacks(ctx.tracker, stage) if ctx.tracker else []),
                 _StopOnInterrupt()]
    if ctx.verbose:
        rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        total = (ctx.model or model).count_params()  # the whole classifier, also when a stage trains on features
        print(f"stage '{stage}': epochs {start_epoch + 1}-{start_epoch + epochs}, learning rate {rate:g}, "
              f"{trainable:,} of {total:,} parameters trainable", flush=True)
    # BackupAndRestore restores a resumed stage through model._initial_epoch, which Keras never clears:
    # left over from the previous stage it would make this one start at the wrong epoch.
    model._initial_epoch = None
    history = model.fit(x, y, validation_data=val, epochs=start_epoch + epochs, initial_epoch=start_epoch,
                        verbose=ctx.verbose, callbacks=callbacks, class_weight=class_weight or ctx.class_weight,
                        **fit_kwargs)
    if guard.bad:
        epoch, batch, loss = guard.bad
        raise NonFiniteLoss(f"the loss became {loss} in stage '{stage}' at epoch {epoch}, batch {batch}: training "
                            f"stopped with the weights of the last good epoch; try a lower learning rate")
    if ctx.tracker:
        return ctx.tracker.rows(stage)
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
