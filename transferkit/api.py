"""The Python API: ``run`` a recipe end to end; the CLI only parses arguments and calls this."""
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from transferkit.data.embedded import ArraySplits
from transferkit.data.sources import Splits, from_arrays, load_data
from transferkit.errors import TransferkitError
from transferkit.recipes import Recipe, load_recipe
from transferkit.runs import history_csv, new_run_dir, plot_history, save_model, write_atomic, write_json
from transferkit.strategies import STRATEGIES, Context
from transferkit.weights import weights_id


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


def _resolve_data(data, recipe, class_names):
    if data is None:
        return load_data(recipe.data, recipe.seed), recipe
    if isinstance(data, Splits):
        return data, recipe
    if isinstance(data, (str, Path)):
        recipe = load_recipe(recipe, overrides=["data.source=folder", f"data.path={data}"])
        return load_data(recipe.data, recipe.seed), recipe
    if isinstance(data, (ArraySplits, dict)):
        return from_arrays(data, class_names), recipe
    raise TransferkitError(f"data must be a folder path, a dict of splits or Splits; got {type(data).__name__}")


def evaluate(model, dataset, class_names):
    """Test loss, accuracy and per-class accuracy of ``model`` on a batched ``(images, labels)`` dataset.

    Example:
        >>> evaluate(result.model, batches(splits.datasets["test"], 32, 64), splits.class_names)["accuracy"]
    """
    probs, labels = [], []
    for images, batch_labels in dataset:
        probs.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
        labels.append(np.asarray(batch_labels))
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    predicted = probs.argmax(axis=1)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
    per_class = {
        name: float(np.mean(predicted[labels == i] == i)) if np.any(labels == i) else None
        for i, name in enumerate(class_names)
    }
    return {"loss": loss, "accuracy": float(np.mean(predicted == labels)), "per_class_accuracy": per_class}


def _parameters(model):
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return trainable, int(sum(np.prod(w.shape) for w in model.weights))


def run(recipe="demo", *, strategy=None, backbone=None, weights=None, epochs=None, image_size=None,
        data=None, class_names=None, data_dir=None, out="runs", overrides=(), verbose=2):
    """Train a recipe end to end and write its run directory.

    Args:
        recipe: a shipped recipe name (``"demo"``, ``"cats_dogs"``), a YAML path, or a :class:`Recipe`.
        strategy, backbone, weights, image_size: override the recipe's.
        epochs: override the epochs of the strategy's (last) stage.
        data: instead of the recipe's data: a folder of class subfolders, a dict
            ``{"train": (images, labels), "val": ..., "test": ...}`` (with ``class_names``), or :class:`Splits`.
        data_dir: where prepared tfds data lives (``data.data_dir``).
        out: the parent folder of run directories.
        overrides: ``"key.sub=value"`` strings, as ``--set`` takes them.
        verbose: Keras verbosity (0 silent, 1 progress bars, 2 one line per epoch).

    Example:
        >>> result = transferkit.run("demo", strategy="finetune", epochs=2)
        >>> sorted(p.name for p in result.run_dir.iterdir())[:3]
        ['curves.png', 'history.csv', 'metrics.json']
    """
    overrides = list(overrides)
    if data_dir is not None:
        overrides.append(f"data.data_dir={data_dir}")
    recipe = load_recipe(recipe, overrides, strategy=strategy, backbone=backbone, weights=weights,
                         image_size=image_size)
    STRATEGIES.get_or_raise(recipe.strategy)
    if epochs is not None:
        recipe = load_recipe(recipe, [f"{recipe.strategy}.epochs={epochs}"])
    started = time.time()
    keras.utils.set_random_seed(recipe.seed)
    splits, recipe = _resolve_data(data, recipe, class_names)
    run_dir = new_run_dir(out, recipe.name, recipe.strategy)
    write_atomic(run_dir / "recipe.yaml", recipe.to_yaml())
    ctx = Context(recipe, splits, verbose=verbose)
    trained = STRATEGIES[recipe.strategy](ctx)
    test = evaluate(trained.model, ctx.data("test"), splits.class_names)
    trainable, total = _parameters(trained.model)
    val_accuracies = [row["val_accuracy"] for row in trained.history if "val_accuracy" in row]
    metrics = {
        "recipe": recipe.name,
        "strategy": recipe.strategy,
        "backbone": None if recipe.strategy == "scratch" else recipe.backbone,
        "baseline": trained.info.get("baseline"),
        "weights": None if recipe.strategy == "scratch" else weights_id(recipe.weights),
        "base_blocks": None if recipe.strategy == "scratch" else recipe.base_blocks,
        "image_size": recipe.image_size,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "per_class_accuracy": test["per_class_accuracy"],
        "best_val_accuracy": max(val_accuracies) if val_accuracies else None,
        "epochs": len(trained.history),
        "wall_time_s": round(time.time() - started, 2),
        "trainable_params": trainable,
        "total_params": total,
        "num_examples": splits.counts,
        "class_names": list(splits.class_names),
        **{k: v for k, v in trained.info.items() if k != "baseline"},
    }
    save_model(trained.model, run_dir / "model.keras")
    write_atomic(run_dir / "history.csv", history_csv(trained.history))
    if trained.history:
        plot_history(trained.history, run_dir / "curves.png", f"{recipe.name}: {recipe.strategy}")
    write_json(run_dir / "metrics.json", metrics)
    return RunResult(trained.model, metrics, trained.history, run_dir, recipe)
