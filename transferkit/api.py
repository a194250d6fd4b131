"""The Python API: ``run`` a recipe end to end; the CLI only parses arguments and calls this."""
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from transferkit.backbone_choice import AUTO, choose_backbone
from transferkit.backbones import BACKBONES
from transferkit.baselines import BASELINES
from transferkit.data.embedded import ArraySplits
from transferkit.data.datasets import from_datasets
from transferkit.data.sources import Splits, from_arrays, load_data
from transferkit.errors import TransferkitError
from transferkit.recipes import Recipe, asks_image_size, load_recipe, recipe_or_folder
from transferkit.evaluation import classification_report, plot_confusion
from transferkit.runs import (PeakMemory, RunTracker, history_csv, new_run_dir, plot_history, run_key, save_model,
                              save_predictions, write_atomic, write_json)
from transferkit.strategies import STRATEGIES, Context
from transferkit.summary import run_summary
from transferkit.temperature import calibrate
from transferkit.training.callbacks import NonFiniteLoss, interruptible
from transferkit.strategies.runtime import (distribution, float32_model, precision, resolve_precision,
                                            scaled_for_replicas, scope)
from transferkit.weights import check_source, weights_id


class RunInterrupted(TransferkitError):
    """The run was stopped with Ctrl-C; it can be resumed from its last completed epoch."""


@dataclass
class RunResult:
    """What a run gives back: the trained model, its metrics, history and run directory.

    Example:
        >>> result = transferkit.run("demo", strategy="feature_extraction")
        >>> result.metrics["test_accuracy"], result.run_dir
    """

    model: keras.Model
    metrics: dict
    history: list
    run_dir: Path
    recipe: Recipe


# what a recipe records of data given in Python (per_class, which picks from the sample or tfds, does not apply)
IN_PYTHON = {"data.source": "arrays", "data.per_class": None}


def check_buildable(recipe):
    """Refuse, before any data is read, a recipe whose network cannot be built (an unknown backbone or
    baseline, weights the backbone cannot take, an image size below the network's minimum, more blocks to
    unfreeze than the base has) or that would train no epoch at all.

    Example:
        >>> check_buildable(load_recipe("demo", backbone="resnet50"))
        Traceback (most recent call last):
        TransferkitError: weights 'hed-bsds500' exist only for vgg16, not resnet50
    """
    if recipe.total_epochs() < 1:
        raise TransferkitError(f"{recipe.strategy} would train no epoch: give it at least one "
                               f"(--epochs N or --set {recipe.strategy}.epochs=N)")
    if not STRATEGIES.get_or_raise(recipe.strategy).uses_backbone:
        BASELINES.get_or_raise(recipe.section().baseline).check_size(recipe.image_size)
    elif recipe.backbone != AUTO:  # auto is resolved with the data (resolve_backbone)
        backbone = BACKBONES.get_or_raise(recipe.backbone)
        backbone.check_size(recipe.image_size)
        check_source(recipe.weights, recipe.backbone)
        unfrozen = getattr(recipe.section(), "max_unfrozen", None)  # a section that unfreezes blocks
        if unfrozen is not None:
            backbone.check_unfreeze(unfrozen(), recipe.base_blocks)


def unused_overrides(recipe, overrides):
    """Warnings for ``--set`` keys in the section of a strategy this recipe does not run (they change nothing).

    Example:
        >>> unused_overrides(load_recipe("demo"), ["scratch.baseline=lenet5"])
        ["warning: --set scratch.baseline=lenet5 changes nothing: the finetune strategy does not use the scratch section"]
    """
    found = []
    for assignment in [overrides] if isinstance(overrides, str) else overrides:
        section = assignment.split("=", 1)[0].split(".", 1)[0].strip()
        if section in STRATEGIES and section != recipe.strategy and "." in assignment.split("=", 1)[0]:
            found.append(f"warning: --set {assignment} changes nothing: the {recipe.strategy} strategy does not use "
                         f"the {section} section")
    return found


def last_stage(recipe, epochs=None, learning_rate=None):
    """The recipe with the epochs and learning rate of its strategy's (last) stage replaced where given.

    Example:
        >>> last_stage(load_recipe("demo"), epochs=3, learning_rate=1e-4).finetune.learning_rate
        0.0001
    """
    update = {k: v for k, v in (("epochs", epochs), ("learning_rate", learning_rate)) if v is not None}
    if not update:
        return recipe
    return recipe.replace({f"{recipe.strategy}.{key}": value for key, value in update.items()})


def fitted_last_stage(recipe, epochs=None, learning_rate=None):
    """A warning (in a list, else ``[]``) when ``--epochs`` or ``--lr`` is given for a last stage that is fitted as a
    logistic regression, which has neither.

    Example:
        >>> fitted_last_stage(load_recipe("folder", strategy="feature_extraction"), epochs=40)
        ['warning: --epochs changes nothing: feature_extraction.fit is logistic (...)']
    """
    given = [flag for flag, value in (("--epochs", epochs), ("--lr", learning_rate)) if value is not None]
    if not given or STRATEGIES[recipe.strategy].stages(recipe)[-1].fit != "logistic":
        return []
    return [f"warning: {' and '.join(given)} {'change' if len(given) > 1 else 'changes'} nothing: "
            f"{recipe.strategy}.fit is logistic, a logistic regression fitted to convergence "
            f"(--set {recipe.strategy}.fit=train trains a dense head by Adam)"]


def natural_size(recipe, splits, sample=64):
    """``(changes, why)``: the image sizes for user data, as recipe changes, and why, in one line.

    Pretrained weights do best at the size they were trained at, small images upsampled: on three sets of
    small images (photo tiles, Fashion-MNIST, digits) EfficientNet-Lite0's ImageNet features at 224 px beat
    those at the images' own size by 8 to 20 points (docs/data.md). So a transfer strategy with pretrained
    weights runs at its backbone's default size, and a network trained from scratch (the scratch baseline's
    ``scratch.image_size``, or ``weights: none``) at the training images' median longer side rounded up to a
    multiple of 32, within what the network takes.

    Example:
        >>> natural_size(load_recipe("folder"), splits)
        ({'image_size': 224, 'scratch.image_size': 64}, "224 px: the size efficientnet_lite0's imagenet ...")
    """
    sides = [max(int(d) for d in image.shape[:2]) for image, _ in splits.datasets["train"].take(sample)]
    median = int(np.median(sides))

    def own_size(spec):
        return int(min(spec.default_size, max(spec.min_size, 32 * -(-median // 32))))

    baseline = BASELINES.get_or_raise(recipe.scratch.baseline)
    scratch_size = own_size(baseline)
    changes = {"scratch.image_size": scratch_size}
    images = f"the training images' median side is {median} px"
    if not STRATEGIES[recipe.strategy].uses_backbone:
        return {**changes, "image_size": scratch_size}, (
            f"{scratch_size} px: {images}; {baseline.name} takes {baseline.min_size} to {baseline.default_size}")
    spec = BACKBONES.get_or_raise("efficientnet_lite0" if recipe.backbone == AUTO else recipe.backbone)
    if recipe.weights == "none":
        size = own_size(spec)
        return {**changes, "image_size": size}, (
            f"{size} px: {images}; {spec.name} takes {spec.min_size} to {spec.default_size}")
    return {**changes, "image_size": spec.default_size}, (
        f"{spec.default_size} px: the size {spec.name}'s {recipe.weights} weights were trained at ({images}; "
        f"the scratch baseline trains at {scratch_size} px)")


def _folder_name(folder):
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).resolve().name).strip("-._")[:64]
    return name or "folder"


def resolve_data(data, recipe, class_names=None):
    """The :class:`Splits` to train on and the recipe that says where they came from.

    ``data`` is None (the recipe's own), a folder path, arrays (a dict of splits or ``ArraySplits``), a dict of
    ``tf.data`` datasets (:func:`~transferkit.data.datasets.from_datasets`) or :class:`Splits`; in-memory data
    are recorded in the recipe as ``data.source: arrays``.

    Example:
        >>> splits, recipe = resolve_data("photos", load_recipe("demo"))
    """
    if data is None:
        if recipe.data.source == "arrays":
            raise TransferkitError("this recipe's data were arrays given in Python: pass them again with data=...")
        return load_data(recipe.data, recipe.seed), recipe
    if isinstance(data, Splits):
        return data, recipe.replace(IN_PYTHON)
    if isinstance(data, (str, Path)):
        # absolute, so recipe.yaml repeats the run from any directory; the run is named for the folder
        recipe = recipe.replace({"data.source": "folder", "data.path": str(Path(data).resolve()), "data.per_class": None,
                                 "name": _folder_name(data), "description": f"images in {Path(data).resolve()}"})
        return load_data(recipe.data, recipe.seed), recipe
    if isinstance(data, dict) and any(isinstance(split, tf.data.Dataset) for split in data.values()):
        return from_datasets(data, class_names), recipe.replace(IN_PYTHON)
    if isinstance(data, (ArraySplits, dict)):
        return from_arrays(data, class_names), recipe.replace(IN_PYTHON)
    raise TransferkitError(f"data must be a folder path, a dict of splits or Splits; got {type(data).__name__}")


def resolve_backbone(recipe, splits, verbose=True):
    """``(recipe, probes)``: with ``backbone: auto`` (and a strategy that uses a backbone), the recipe with the
    backbone its linear probes chose (:func:`~transferkit.backbone_choice.choose_backbone`) and their rows;
    otherwise the recipe as it is and no probes.

    Example:
        >>> recipe, probes = resolve_backbone(load_recipe("demo", backbone="auto"), splits)
    """
    if recipe.backbone != AUTO or not STRATEGIES[recipe.strategy].uses_backbone:
        return recipe, None
    recipe, probes = choose_backbone(recipe, splits, verbose=verbose)
    check_buildable(recipe)
    return recipe, probes


def predict_split(model, dataset):
    """``(labels, probabilities)`` of ``model`` over a batched ``(images, labels)`` dataset, in order.

    Example:
        >>> labels, probabilities = predict_split(result.model, batches(splits.datasets["test"], 32, 64))
    """
    probabilities, labels = [], []
    for images, batch_labels in dataset:
        probabilities.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(labels), np.concatenate(probabilities)


def _parameters(model):
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return trainable, int(sum(np.prod(w.shape) for w in model.weights))


def _resumable(run_dir):
    run_dir = Path(run_dir)
    state_file = run_dir / "run.json"
    if not (run_dir / "recipe.yaml").is_file() or not state_file.is_file():
        raise TransferkitError(f"{run_dir} is not a transferkit run directory (no recipe.yaml and run.json)")
    if json.loads(state_file.read_text()).get("status") == "completed":
        raise TransferkitError(f"{run_dir} has completed already; there is nothing to resume")
    return run_dir, load_recipe(str(run_dir / "recipe.yaml"))


def _resuming(run_dir, recipe):
    """``resuming RUN (finetune): stage 'finetune' done to epoch 6 of 10; training goes on from epoch 7``."""
    state = json.loads((Path(run_dir) / "run.json").read_text())
    total = recipe.total_epochs()
    done = int(state.get("epoch", 0))
    where = f"stage '{state['stage']}' done to epoch {done} of {total}" if done else f"no epoch of {total} done yet"
    return f"resuming {run_dir} ({recipe.strategy}): {where}; training goes on from epoch {done + 1}"


def _one_line(err):
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:500]


def run(recipe="demo", *, strategy=None, backbone=None, weights=None, epochs=None, learning_rate=None,
        image_size=None, data=None, class_names=None, data_dir=None, out="runs", overrides=(), resume=None, verbose=2,
        callbacks=()):
    """Train a recipe end to end and write its run directory.

    Args:
        recipe: a shipped recipe name (``"demo"``, ``"cats_dogs"``), a YAML path, or a :class:`Recipe`.
        strategy, backbone, weights, image_size: override the recipe's.
        epochs, learning_rate: override the epochs and the learning rate of the strategy's (last) stage.
        data: instead of the recipe's data: a folder of class subfolders, a dict
            ``{"train": (images, labels), "val": ..., "test": ...}`` (with ``class_names``), a dict of
            ``tf.data`` datasets ``{"train": ds, "val": ds, "test": ds}``, or :class:`Splits`.
        data_dir: where prepared tfds data lives (``data.data_dir``).
        out: the parent folder of run directories.
        overrides: ``"key.sub=value"`` strings, as ``--set`` takes them (a list, or one string).
        resume: a run directory whose run stopped (killed, interrupted, failed): it continues from its last
            completed epoch, stage included, with the recipe saved there (other arguments but ``data`` ignored).
        verbose: Keras verbosity (0 silent, 1 progress bars, 2 one line per epoch).
        callbacks: Keras callbacks added to every stage's ``fit`` (``keras.callbacks.TensorBoard``, your own).

    Example:
        >>> result = transferkit.run("demo", strategy="finetune", epochs=2)
        >>> sorted(p.name for p in result.run_dir.iterdir())[:3]
        ['confusion.png', 'curves.png', 'history.csv']
    """
    if resume is not None:
        run_dir, recipe = _resumable(resume)
        print(_resuming(run_dir, recipe), flush=True)  # even when quiet: a resumed run says what it continues
        distribution(recipe.distribute)
        splits, recipe = resolve_data(data, recipe, class_names)
        recipe, probes = resolve_backbone(recipe, splits, verbose=bool(verbose))
    else:
        run_dir = None
        recipe, splits, probes = prepare(recipe, strategy=strategy, backbone=backbone, weights=weights, epochs=epochs,
                                         learning_rate=learning_rate, image_size=image_size, data=data,
                                         class_names=class_names, data_dir=data_dir, overrides=overrides,
                                         verbose=verbose)
    return run_resolved(recipe, splits, out=out, verbose=verbose, run_dir=run_dir, probes=probes, callbacks=callbacks)


def prepare(recipe="demo", *, strategy=None, backbone=None, weights=None, epochs=None, learning_rate=None,
            image_size=None, data=None, class_names=None, data_dir=None, overrides=(), verbose=2):
    """``(recipe, splits, probes)``: what :func:`run` trains, resolved and checked before any training: the recipe
    with its overrides (a folder as the ``folder`` recipe, its image size from the images, ``backbone: auto``
    chosen), the data loaded and split, and the backbone probes (or None). Arguments as for :func:`run`.

    Example:
        >>> recipe, splits, probes = prepare("photos/", strategy="feature_extraction")
    """
    recipe, data = recipe_or_folder(recipe, data)  # transferkit run photos/: the recipe made for user data
    explicit_size = asks_image_size(overrides, image_size)
    recipe = load_recipe(recipe, overrides, strategy=strategy, backbone=backbone, weights=weights,
                         image_size=image_size)
    if data_dir is not None:
        recipe = recipe.replace({"data.data_dir": str(data_dir)})
    STRATEGIES.get_or_raise(recipe.strategy)
    recipe = last_stage(recipe, epochs, learning_rate)
    for line in unused_overrides(recipe, overrides) + fitted_last_stage(recipe, epochs, learning_rate):
        print(line, file=sys.stderr, flush=True)
    check_buildable(recipe)
    distribution(recipe.distribute)  # made before any TensorFlow op runs (multiworker needs it); then reused
    splits, recipe = resolve_data(data, recipe, class_names)
    if isinstance(data, (str, Path)) and not explicit_size:
        changes, why = natural_size(recipe, splits)
        recipe = recipe.replace(changes)
        check_buildable(recipe)
        if verbose:
            print(f"image size {why} (--image-size to change)", flush=True)
    recipe, probes = resolve_backbone(recipe, splits, verbose=bool(verbose))
    return recipe, splits, probes


def run_resolved(recipe, splits, out="runs", verbose=2, run_dir=None, probes=None, callbacks=()):
    """:func:`run` for a validated :class:`Recipe` and loaded :class:`Splits`, in a new run directory
    under ``out`` or continuing ``run_dir``. ``probes`` (from :func:`resolve_backbone`) go into
    ``metrics.json`` as ``backbone_probe``; ``callbacks`` go into every stage's ``fit``.

    Example:
        >>> result = run_resolved(load_recipe("demo"), load_data(load_recipe("demo").data))
    """
    keras.utils.set_random_seed(recipe.seed)
    if recipe.deterministic:
        tf.config.experimental.enable_op_determinism()  # for the rest of this process
    if run_dir is None:
        run_dir = new_run_dir(out, recipe.name, recipe.strategy)
        write_atomic(run_dir / "recipe.yaml", recipe.to_yaml())
    tracker = RunTracker(run_dir)
    if tracker.state.get("data", splits.fingerprint) != splits.fingerprint:
        raise TransferkitError(f"the data differs from the data {run_dir} started with; start a new run instead")
    tracker.set_status("running", data=splits.fingerprint, key=run_key(recipe, splits))
    ctx = Context(recipe, splits, verbose=verbose, tracker=tracker, callbacks=list(callbacks))

    try:
        # models are built and compiled under the tf.distribute strategy's scope; batch_size is per replica and
        # learning rates scale linearly with the replicas. The dtype policy holds for this run only, and the
        # model returned and saved is rebuilt in float32.
        strategy = distribution(recipe.distribute)
        replicas = strategy.num_replicas_in_sync if strategy is not None else 1
        ctx.recipe = scaled_for_replicas(recipe, replicas)
        policy = resolve_precision(recipe.mixed_precision)
        if verbose:
            lines, warnings = run_summary(recipe, splits, policy, probes)
            print("\n".join(lines + warnings), flush=True)
        with PeakMemory() as memory, precision(policy), scope(strategy), interruptible():
            trained = STRATEGIES[recipe.strategy].train(ctx)
        trained.model = ctx.model = float32_model(trained.model, rebuild=strategy is not None)
        trained.info["precision"] = policy or "float32"
        if probes:
            trained.info["backbone_probe"] = probes
        if strategy is not None:
            trained.info.update(replicas=replicas, global_batch_size=ctx.recipe.batch_size)
    except KeyboardInterrupt:
        tracker.set_status("interrupted")
        raise RunInterrupted(f"interrupted; every completed epoch is saved: transferkit run --resume {run_dir}") \
            from None
    except NonFiniteLoss as err:
        ctx.model = float32_model(ctx.model, rebuild=strategy is not None)
        save_model(ctx.model, run_dir / "model.keras")
        tracker.set_status("failed", reason=str(err))
        raise NonFiniteLoss(f"{err} (saved to {run_dir / 'model.keras'})") from None
    except Exception as err:
        tracker.set_status("failed", reason=_one_line(err))
        raise
    metrics = _finish(ctx, trained, tracker, memory.peak_mb)
    return RunResult(trained.model, metrics, trained.history, run_dir, recipe)


def _finish(ctx, trained, tracker, peak_rss_mb):
    """Calibrate the model on the validation split (:func:`~transferkit.temperature.calibrate`), evaluate it on
    the test split, write the model, predictions, history, curves and metrics; mark the run completed."""
    recipe, splits, run_dir = ctx.recipe, ctx.splits, tracker.run_dir
    val_labels, val_probabilities = predict_split(trained.model, ctx.data("val"))
    labels, probabilities = predict_split(trained.model, ctx.data("test"))
    # temperature scaling folded into the model's softmax layer: what is saved, exported and measured below
    calibration, val_probabilities, probabilities = calibrate(
        trained.model, (val_labels, val_probabilities), (labels, probabilities),
        lambda: predict_split(trained.model, ctx.data("test").take(1))[1], enabled=recipe.calibrate)
    test = classification_report(labels, probabilities, splits.class_names)
    epoch_seconds = sum(row.get("seconds", 0.0) for row in trained.history)
    trainable, total = _parameters(trained.model)
    val_accuracies = [row["val_accuracy"] for row in trained.history if "val_accuracy" in row]
    scratch = not STRATEGIES[recipe.strategy].uses_backbone
    metrics = {
        "recipe": recipe.name,
        "strategy": recipe.strategy,
        "backbone": None if scratch else recipe.backbone,
        "baseline": trained.info.get("baseline"),
        "weights": None if scratch else weights_id(recipe.weights),
        "base_blocks": None if scratch else recipe.base_blocks,
        "image_size": recipe.image_size,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "per_class_accuracy": {name: c["recall"] for name, c in test["per_class"].items()},
        "per_class": test["per_class"],
        "confusion_matrix": test["confusion_matrix"],
        "calibration": calibration,
        "best_val_accuracy": max(val_accuracies) if val_accuracies else None,
        "stages": ctx.stage_log,
        "epochs": len(trained.history),
        "wall_time_s": round(tracker.elapsed(), 2),
        "train_images_per_s": round(splits.counts["train"] * len(trained.history) / epoch_seconds, 1)
        if epoch_seconds else None,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "trainable_params": trainable,
        "total_params": total,
        "num_examples": splits.counts,
        "class_names": list(splits.class_names),
        **{k: v for k, v in trained.info.items() if k != "baseline"},
    }
    save_model(trained.model, run_dir / "model.keras")
    save_predictions(run_dir, labels, probabilities, val_labels, val_probabilities)
    write_atomic(run_dir / "history.csv", history_csv(trained.history))
    if trained.history:
        plot_history(trained.history, run_dir / "curves.png", f"{recipe.name}: {recipe.strategy}")
    plot_confusion(test["confusion_matrix"], splits.class_names, run_dir / "confusion.png",
                   f"{recipe.name}: {recipe.strategy}, test accuracy {test['accuracy']:.3f}")
    write_json(run_dir / "metrics.json", metrics)
    tracker.set_status("completed")
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return metrics
