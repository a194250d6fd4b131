"""Evaluate a run directory with :func:`evaluate_run` (what ``transferkit evaluate`` calls): accuracy,
per-class precision and recall, a confusion matrix, with test-time augmentation.

Example:
    >>> report = evaluate_run("runs/demo-feature_extraction-20261123-171500", tta=6)
    >>> report["accuracy"], report["files"]
"""
import json
from pathlib import Path

import numpy as np

from transferkit.data.folder import class_files, files_dataset
from transferkit.data.pipeline import batches
from transferkit.data.sources import load_data
from transferkit.errors import TransferkitError
from transferkit.predict import KerasPredictor, load, view_names
from transferkit.recipes import load_recipe
from transferkit.runs import save_figure, write_json


def classification_report(labels, probabilities, class_names):
    """Accuracy, log loss, per-class precision, recall and support, and the confusion matrix
    (rows: true class, columns: predicted). A precision or recall with nothing to divide by is None.

    Example:
        >>> classification_report([0, 1, 1], np.array([[.9, .1], [.8, .2], [.3, .7]]), ["a", "b"])["per_class"]["a"]
        {'precision': 0.5, 'recall': 1.0, 'support': 1}
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    predicted = probabilities.argmax(axis=1)
    matrix = np.zeros((len(class_names), len(class_names)), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    hits, as_predicted, support = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    per_class = {
        name: {"precision": float(hits[i] / as_predicted[i]) if as_predicted[i] else None,
               "recall": float(hits[i] / support[i]) if support[i] else None,
               "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)))
    return {"accuracy": float(np.mean(predicted == labels)), "loss": float(loss), "num_examples": len(labels),
            "per_class": per_class, "confusion_matrix": matrix.tolist()}


def plot_confusion(matrix, class_names, path, title):
    """The confusion matrix as a PNG: counts in the cells, true classes down, predicted across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    side = max(4.5, 2.5 + 0.55 * len(class_names))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path)


def _folder_data(folder, class_names):
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise TransferkitError(f"data folder not found: {root}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        root = root / "test"
    files = class_files(root)
    unknown = sorted(set(files) - set(class_names))
    if unknown:
        raise TransferkitError(f"{root} has class folders the model does not know: {', '.join(unknown)} "
                               f"(it knows {', '.join(class_names)})")
    pairs = [(path, class_names.index(name)) for name, paths in files.items() for path in paths]
    if not pairs:
        raise TransferkitError(f"no images in class subfolders of {root}")
    return files_dataset(pairs), f"folder {root}"


# evaluate_run is called from Python and by ``transferkit evaluate``: name both ways of giving it a folder
_PASS_FOLDER = "pass a folder of class subfolders: data=FOLDER in Python, --data FOLDER on the command line"


def _recipe_test_split(run_dir, metrics_names, counts):
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    if recipe.data.source == "arrays":
        raise TransferkitError(f"{run_dir.name} was trained on arrays given in Python, which its recipe cannot "
                               f"re-load: {_PASS_FOLDER}")
    try:
        splits = load_data(recipe.data, recipe.seed)
    except TransferkitError as err:
        raise TransferkitError(f"{err}; to evaluate on other images, {_PASS_FOLDER}") from err
    if splits.class_names != metrics_names or splits.counts != counts:
        raise TransferkitError(f"the data {run_dir.name}'s recipe loads now are not the data it was trained on "
                               f"(other classes or counts): {_PASS_FOLDER}")
    return splits.datasets["test"], f"test split of recipe '{recipe.name}' ({recipe.data.source})"


def evaluate_run(run_dir, data=None, tta=1, out=None, batch_size=32, flips=None):
    """Evaluate the model of ``run_dir`` with ``tta`` test-time views averaged (see :func:`~transferkit.predict.tta_views`).

    ``flips``: use the flipped views; by default only if the run's recipe flipped images horizontally.

    ``data``: a folder of class subfolders (its ``test/`` if it has ``train/`` and ``test/``); default the
    run's own test split, re-loaded from ``recipe.yaml`` (impossible for runs on arrays: a one-line error).
    Writes ``confusion_matrix.png`` and ``evaluation.json`` to ``out`` (default ``run_dir``).

    Example:
        >>> report = evaluate_run("runs/demo-feature_extraction-20261123-171500", tta=6)
        >>> report["accuracy"], report["per_class"]["trouser"]["recall"]
        (0.8867, 0.9667)
    """
    run_dir = Path(run_dir)
    predictor = load(run_dir)
    if not isinstance(predictor, KerasPredictor) or not (run_dir / "recipe.yaml").is_file():
        raise TransferkitError(f"{run_dir} is not a run directory (no model.keras and recipe.yaml)")
    if flips is None:
        flips = "horizontal" in load_recipe(str(run_dir / "recipe.yaml")).augment.flip
    views = view_names(tta, flips)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if data is None:
        dataset, source = _recipe_test_split(run_dir, predictor.class_names, metrics["num_examples"])
    else:
        dataset, source = _folder_data(data, predictor.class_names)
    probabilities, labels = [], []
    for images, batch_labels in batches(dataset, predictor.image_size, batch_size, predictor.resize):
        probabilities.append(predictor.predict_resized(images, tta, flips))
        labels.append(batch_labels.numpy())
    report = classification_report(np.concatenate(labels), np.concatenate(probabilities), predictor.class_names)
    out = Path(out) if out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    report = {"run_dir": str(run_dir), "data": source, "tta": tta, "views": list(views), **report,
              "files": [str(out / "confusion_matrix.png"), str(out / "evaluation.json")]}
    plot_confusion(report["confusion_matrix"], predictor.class_names, out / "confusion_matrix.png",
                   f"{run_dir.name}\naccuracy {report['accuracy']:.4f}, {tta} view{'s' if tta > 1 else ''}")
    write_json(out / "evaluation.json", report)
    return report
