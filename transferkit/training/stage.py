"""The one stage runner: every strategy trains each of its stages through :func:`train_stage`, which builds
the optimizer (fused Adam, schedule, per-layer rates, EMA), the loss (label smoothing, soft labels from MixUp and
CutMix) and the callbacks (NaN guard, early stopping keeping the best epoch, checkpoints, TensorBoard, Ctrl-C),
then fits. A resumed stage continues exactly; a finished one is not trained again."""
import json
import math

import keras
import numpy as np

from transferkit.data.mixing import mixed, mixes
from transferkit.data.pipeline import EpochData
from transferkit.errors import TransferkitError
from transferkit.runs import checkpoint_callbacks, write_json
from transferkit.training.callbacks import (BestEpoch, LogLearningRate, NanGuard, NonFiniteLoss, Reseed,
                                            StopOnInterrupt)
from transferkit.training.losses import loss_and_metric
from transferkit.training.optimizer import adam
from transferkit.training.schedules import make_schedule
from transferkit.training.state import checkpoint_epoch


class RateFound(Exception):
    """Raised by :func:`train_stage` when the run only asked for the learning-rate range test of a stage."""

    def __init__(self, finding):
        super().__init__(finding.stage)
        self.finding = finding


def resume_epoch(tracker, stage, start_epoch):
    """The epoch (0-based, counted across stages) that ``stage`` continues at: the one after its last backup, as
    :class:`~transferkit.training.state.Checkpoint` will restore it, else ``start_epoch``.

    Example:
        >>> resume_epoch(tracker, "finetune", 5)   # 7 after a kill during the stage's third epoch
    """
    if tracker is None:
        return start_epoch
    try:
        epoch = checkpoint_epoch(tracker.backup_dir(stage))
    except (OSError, ValueError, KeyError) as err:
        raise TransferkitError(f"the backup of stage '{stage}' is unreadable ({tracker.backup_dir(stage)}): "
                               f"{err}") from None
    return start_epoch if epoch is None else epoch


def _steps(train, batch_size):
    if isinstance(train, EpochData):
        return train.steps
    if isinstance(train, tuple):
        return math.ceil(len(train[1]) / batch_size)
    count = int(train.cardinality())
    return count if count > 0 else None  # unknown or infinite: the schedule counts one step per epoch


def _rate(ctx, model, stage, train, loss, metric):
    """The stage's learning rate: the recipe's, or with ``auto`` the range test's suggestion (kept in the stage's
    backup, so a resumed run trains at the same rate)."""
    asked = ctx.find_rate_for == stage.name
    if stage.learning_rate != "auto" and not asked:
        return float(stage.learning_rate)
    saved = ctx.tracker.backup_dir(stage.name) / "rate.json" if ctx.tracker else None
    if saved is not None and saved.is_file() and not asked:
        return float(json.loads(saved.read_text())["suggestion"])
    if not isinstance(train, EpochData):
        raise TransferkitError(f"learning_rate auto needs the stage's training batches (stage '{stage.name}')")
    from transferkit.training.lr_find import find_rate

    finding = find_rate(model, train, loss, metric, *ctx.sweep, jit_compile=ctx.recipe.jit_compile)
    finding.stage = stage.name
    if asked:
        raise RateFound(finding)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        write_json(saved, finding.to_dict())
    if ctx.verbose:
        print(f"stage '{stage.name}': learning rate auto: the range test suggests {finding.suggestion:.3g}",
              flush=True)
    return finding.suggestion


def _trainable(kept, model):
    """``N of M parameters trainable`` of ``kept``, the model a run keeps, when ``model`` trains; with the
    parameters ``model`` trains that ``kept`` does not have (auxiliary classifiers), which are dropped after."""
    kept_ids = {id(weight) for weight in kept.weights}
    sizes = [(id(weight) in kept_ids, int(np.prod(weight.shape))) for weight in model.trainable_weights]
    line = f"{sum(n for inside, n in sizes if inside):,} of {kept.count_params():,} parameters trainable"
    extra = sum(n for inside, n in sizes if not inside)
    return line + (f", and {extra:,} of auxiliary classifiers, trained and then dropped" if extra else "")


def _finished(ctx, stage):
    """The record of ``stage`` if a run being resumed finished it already, else None."""
    done = ctx.tracker.backup_dir(stage.name) / "done.json" if ctx.tracker else None
    return json.loads(done.read_text()) if done is not None and done.is_file() else None


def _carried(ctx, stage):
    """``(best value, kept epoch, its tie value)`` of the stage before, when it watched the same monitor and
    kept its best."""
    before = ctx.stage_log[-1] if ctx.stage_log else {}
    if before.get("monitor") != stage.monitor or before.get("best") is None or not stage.restore_best:
        return None
    return before["best"], before["kept_epoch"], before.get("best_tie")


def train_stage(ctx, model, stage, train, val, start_epoch=0, multipliers=None, class_weight=None, carry_best=False,
                **fit_kwargs):
    """Compile ``model`` for ``stage`` (a :class:`~transferkit.recipes.Stage`) and fit it; returns the stage's
    history rows ``{epoch, stage, loss, accuracy, val_..., learning_rate, ...}`` and adds the stage's record
    (epochs run, epoch kept, rate) to ``ctx.stage_log``.

    ``train`` is :class:`~transferkit.data.pipeline.EpochData` (each epoch's batches a function of the seed and
    the epoch, and dropout reseeded the same way, so a resumed stage trains exactly as an uninterrupted one), a
    batched dataset or an ``(x, y)`` tuple of arrays. The recipe's ``augment.mixup`` and ``augment.cutmix`` mix
    its batches. ``multipliers`` maps variable paths to factors on the learning rate. With early stopping
    (``stage.patience``) the stage ends when ``stage.monitor`` stops improving, and with ``stage.restore_best``
    the model keeps its best epoch's weights. With a tracker the stage is checkpointed every epoch; a stage a
    resumed run finished before is not trained again, its kept weights are loaded. A NaN or infinite loss stops
    training with :class:`NonFiniteLoss`, keeping the last good weights. ``class_weight`` (``{index: weight}``)
    defaults to the recipe's ``data.class_weight``. With ``carry_best`` the model begins the stage holding the
    kept weights of the stage before (in ``ctx.stage_log``), and keeps them unless an epoch of this stage beats that
    stage's best: a fine-tuning stage never ends worse on validation than the head it started from.

    Example:
        >>> rows = train_stage(ctx, model, recipe.frozen_augment.stage("head"), ctx.data("train"), ctx.data("val"))
    """
    if stage.epochs <= 0:
        return []
    recipe, tracker = ctx.recipe, ctx.tracker
    done = _finished(ctx, stage)
    if done is not None:
        model.load_weights(tracker.backup_dir(stage.name) / "kept.weights.h5")
        ctx.stage_log.append(done)
        return tracker.rows(stage.name)
    soft = False
    if isinstance(train, EpochData):
        rank = train.make(0).element_spec[0].shape.rank
        if mixes(recipe.augment, rank):
            train = mixed(train, ctx.splits.num_classes, recipe.seed, recipe.augment.mixup, recipe.augment.cutmix)
            soft = True
    loss, metric = loss_and_metric(stage.label_smoothing, soft)
    rate = _rate(ctx, model, stage, train, loss, metric)
    steps = _steps(train, fit_kwargs.get("batch_size", recipe.batch_size))
    schedule = make_schedule(stage.schedule, rate, (steps or 1) * stage.epochs, round(stage.warmup_epochs * (steps or 1)))
    model.compile(optimizer=adam(schedule, multipliers, stage.ema), loss=loss, metrics=[metric],
                  jit_compile=bool(recipe.jit_compile))

    resumed_at = resume_epoch(tracker, stage.name, start_epoch)
    seeds = []
    if isinstance(train, EpochData):  # epoch k's batches, from the epoch the stage (re)starts at
        x, y = train.epochs(resumed_at, start_epoch + stage.epochs), None
        fit_kwargs["steps_per_epoch"] = train.steps
        seeds = [Reseed(recipe.seed)]
    else:
        x, y = train if isinstance(train, tuple) else (train, None)
    fit_kwargs.setdefault("shuffle", y is not None)  # datasets come shuffled from the pipeline
    guard = NanGuard()
    earlier = [row for row in tracker.rows(stage.name) if row["epoch"] <= resumed_at] if tracker else []
    best = BestEpoch(stage.monitor, stage.patience, stage.restore_best, earlier,
                     tracker.backup_dir(stage.name) / "best.weights.npz" if tracker else None,
                     start=_carried(ctx, stage) if carry_best else None,
                     tie=None if stage.ties == "first" else stage.ties) if val is not None else None
    ema = [keras.callbacks.SwapEMAWeights()] if stage.ema else []
    # the interrupt check runs last, so an epoch that ended is checkpointed before it stops the run
    callbacks = [guard, *seeds, LogLearningRate(), *ema, *([best] if best else []), *ctx.callbacks,
                 *(checkpoint_callbacks(tracker, stage.name) if tracker else []), StopOnInterrupt()]
    if ctx.verbose:  # the whole classifier's parameters, also when a stage trains on features
        done = f" (resumed: {start_epoch + 1}-{resumed_at} done)" if resumed_at > start_epoch else ""
        print(f"stage '{stage.name}': epochs {resumed_at + 1}-{start_epoch + stage.epochs}{done}, learning rate "
              f"{rate:g} ({stage.schedule}), {_trainable(ctx.model or model, model)}", flush=True)
    # BackupAndRestore restores a resumed stage through model._initial_epoch, which Keras never clears:
    # left over from the previous stage it would make this one start at the wrong epoch.
    model._initial_epoch = None
    history = model.fit(x, y, validation_data=val, epochs=start_epoch + stage.epochs, initial_epoch=start_epoch,
                        verbose=ctx.verbose, callbacks=callbacks, class_weight=class_weight or ctx.class_weight,
                        **fit_kwargs)
    if guard.bad:
        raise NonFiniteLoss(f"{guard.bad} of stage '{stage.name}': training stopped with the weights of the last "
                            f"good epoch; try a lower learning rate")
    rows = tracker.rows(stage.name) if tracker else _rows(history, stage.name, start_epoch)
    record = {"stage": stage.name, "epochs_run": len(rows), "epochs_planned": stage.epochs,
              "kept_epoch": best.kept_epoch if best else (rows[-1]["epoch"] if rows else None),
              # patience running out at the last epoch stops nothing early
              "stopped_early": bool(best and best.stopped_epoch and len(rows) < stage.epochs),
              "monitor": stage.monitor if best else None,
              "best": float(best.best) if best and stage.restore_best and best.best is not None else None,
              "best_tie": float(best.best_tie) if best and best.best_tie is not None else None,
              "learning_rate": rate, "schedule": stage.schedule}
    if best and best.kept_epoch and rows and best.kept_epoch < rows[0]["epoch"]:
        record["kept_from"] = ctx.stage_log[-1]["stage"]
    if ctx.verbose and best and best.kept_epoch:
        why = f"stopped early after epoch {rows[-1]['epoch']}; " if record["stopped_early"] else ""
        where = f" of stage '{record['kept_from']}', which no epoch of this one beat" if "kept_from" in record else ""
        kept = next((row for row in rows if row["epoch"] == best.kept_epoch), {stage.monitor: best.best})
        print(f"stage '{stage.name}': {why}kept epoch {best.kept_epoch}{where} ({stage.monitor} "
              f"{kept.get(stage.monitor, float('nan')):.4f})", flush=True)
    if tracker:
        tracker.backup_dir(stage.name).mkdir(parents=True, exist_ok=True)
        model.save_weights(tracker.backup_dir(stage.name) / "kept.weights.h5")
        write_json(tracker.backup_dir(stage.name) / "done.json", record)
    ctx.stage_log.append(record)
    return rows


def _rows(history, stage, start_epoch):
    rows = []
    for i in range(len(history.epoch)):
        row = {"epoch": start_epoch + i + 1, "stage": stage}
        row.update({k: float(v[i]) for k, v in history.history.items()})
        rows.append(row)
    return rows
