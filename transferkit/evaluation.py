"""Evaluate a run directory or an export with :func:`evaluate_run` (what ``transferkit evaluate`` calls):
accuracy, per-class precision and recall, a confusion matrix, with test-time augmentation.

Example:
    >>> report = evaluate_run("runs/demo-feature_extraction-20261123-171500", tta=6)
    >>> report["accuracy"], report["files"]
"""
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from transferkit.data.folder import class_files, files_dataset
from transferkit.data.pipeline import batches
from transferkit.data.sources import load_data, rgb_uint8
from transferkit.errors import TransferkitError
from transferkit.predict import load, view_names
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


def _array_data(images, labels, class_names):
    images, labels = rgb_uint8(images), np.asarray(labels, np.int32)
    if len(images) != len(labels) or not len(labels) or labels.min() < 0 or labels.max() >= len(class_names):
        raise TransferkitError(f"data=(images, labels) needs as many labels as images, each 0 to "
                               f"{len(class_names) - 1}; got {len(images)} images and labels {labels[:8].tolist()}")
    return tf.data.Dataset.from_tensor_slices((images, labels)), f"{len(labels)} images given as arrays"


# evaluate_run is called from Python and by ``transferkit evaluate``: name both ways of giving it a folder
_PASS_FOLDER = "pass a folder of class subfolders: data=FOLDER in Python, --data FOLDER on the command line"


def run_splits(run_dir, class_names, instead=_PASS_FOLDER):
    """The :class:`~transferkit.data.sources.Splits` of the run in ``run_dir``, re-loaded from its
    ``recipe.yaml`` and checked to hold ``class_names`` and the counts the run saw. ``instead`` ends the one-line
    error when they cannot be re-loaded (a run on arrays given in Python, data moved or changed).

    Example:
        >>> run_splits(Path("runs/demo-finetune-20261123-171500"), names).counts
        {'train': 50, 'val': 200, 'test': 300}
    """
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    if recipe.data.source == "arrays":
        raise TransferkitError(f"{run_dir.name} was trained on arrays given in Python, which its recipe cannot "
                               f"re-load: {instead}")
    try:
        splits = load_data(recipe.data, recipe.seed)
    except TransferkitError as err:
        raise TransferkitError(f"{err}; to use other images, {instead}") from err
    counts = json.loads((run_dir / "metrics.json").read_text())["num_examples"]
    if splits.class_names != tuple(class_names) or splits.counts != counts:
        raise TransferkitError(f"the data {run_dir.name}'s recipe loads now are not the data it was trained on "
                               f"(other classes or counts): {instead}")
    return splits


def run_split(run_dir, split, class_names, instead=_PASS_FOLDER):
    """The ``split`` (train, val or test) of the run in ``run_dir`` (see :func:`run_splits`) and a line saying
    what it is.

    Example:
        >>> dataset, described = run_split(Path("runs/demo-finetune-20261123-171500"), "train", names)
        >>> described
        "train split of recipe 'demo' (sample)"
    """
    splits = run_splits(run_dir, class_names, instead)
    recipe = load_recipe(str(run_dir / "recipe.yaml"))
    return splits.datasets[split], f"{split} split of recipe '{recipe.name}' ({recipe.data.source})"


def run_of(source):
    """The run directory behind ``source``: itself, or the run its ``export.json`` names (if still there);
    None for neither.

    Example:
        >>> run_of("runs/demo-finetune-20261123-171500/export/tflite/model.tflite")
        PosixPath('/home/me/runs/demo-finetune-20261123-171500')
    """
    folder = Path(source) if Path(source).is_dir() else Path(source).parent
    if (folder / "recipe.yaml").is_file():
        return folder
    if (folder / "export.json").is_file():
        run_dir = Path(json.loads((folder / "export.json").read_text())["run_dir"])
        if (run_dir / "recipe.yaml").is_file():
            return run_dir
    return None


def evaluation_data(run_dir, data, class_names):
    """An unbatched ``(uint8 image, label)`` dataset to evaluate on and a line saying what it is.

    ``data``: a folder of class subfolders (its ``test/`` if it has ``train/`` and ``test/``), or in Python
    ``(images, labels)`` arrays; None for the test split of ``run_dir``, re-loaded from its ``recipe.yaml``
    (a one-line error if ``run_dir`` is None: no run to re-load).

    Example:
        >>> dataset, source = evaluation_data(Path("runs/demo-finetune-20261123-171500"), None, names)
        >>> source
        "test split of recipe 'demo' (tfds)"
    """
    if isinstance(data, (tuple, list)):
        return _array_data(*data, class_names)
    if data is not None:
        return _folder_data(data, class_names)
    if run_dir is None:
        raise TransferkitError(f"there is no run directory to re-load a test split from: {_PASS_FOLDER}")
    return run_split(run_dir, "test", class_names)


def predict_dataset(predictor, dataset, tta=1, flips=True, batch_size=32):
    """``(labels, probabilities)`` of ``predictor`` over an unbatched ``(uint8 image, label)`` dataset,
    resized as in training, with ``tta`` test-time views averaged.

    Example:
        >>> labels, probabilities = predict_dataset(transferkit.load("runs/.../export/onnx"), dataset)
    """
    probabilities, labels = [], []
    for images, batch_labels in batches(dataset, predictor.image_size, batch_size, predictor.resize):
        probabilities.append(predictor.predict_resized(images, tta, flips))
        labels.append(batch_labels.numpy())
    if not labels:
        raise TransferkitError("no images to evaluate on")
    return np.concatenate(labels), np.concatenate(probabilities)


def evaluate_run(source, data=None, tta=1, out=None, batch_size=32, flips=None):
    """Evaluate the model of ``source`` (a run directory or an export of any format) with ``tta`` test-time
    views averaged (see :func:`~transferkit.predict.tta_views`), in the export's own runtime.

    ``flips``: use the flipped views; by default only if the run's recipe flipped images horizontally.

    ``data``: see :func:`evaluation_data`; by default the test split of the run (for an export, the run its
    ``export.json`` names). Writes ``confusion_matrix.png`` and ``evaluation.json`` to ``out`` (default the
    run or export folder).

    Example:
        >>> report = evaluate_run("runs/demo-feature_extraction-20261123-171500", tta=6)
        >>> report["accuracy"], report["per_class"]["trouser"]["recall"]
        (0.8867, 0.9667)
        >>> evaluate_run("runs/demo-feature_extraction-20261123-171500/export/tflite")["runtime"]
        'tf.lite.Interpreter (tensorflow 2.21.0)'
    """
    source = Path(source)
    predictor = load(source)
    run_dir = run_of(source)
    if flips is None:
        flips = run_dir is not None and "horizontal" in load_recipe(str(run_dir / "recipe.yaml")).augment.flip
    views = view_names(tta, flips)
    dataset, described = evaluation_data(run_dir, data, predictor.class_names)
    labels, probabilities = predict_dataset(predictor, dataset, tta, flips, batch_size)
    report = classification_report(labels, probabilities, predictor.class_names)
    out = Path(out) if out else predictor.path
    out.mkdir(parents=True, exist_ok=True)
    report = {"source": str(source), "run_dir": run_dir and str(run_dir), "runtime": predictor.runtime,
              "data": described, "tta": tta, "views": list(views), **report,
              "files": [str(out / "confusion_matrix.png"), str(out / "evaluation.json")]}
    title = source.name if run_dir in (None, source) else f"{run_dir.name}: {source.name}"
    plot_confusion(report["confusion_matrix"], predictor.class_names, out / "confusion_matrix.png",
                   f"{title}\naccuracy {report['accuracy']:.4f}, {tta} view{'s' if tta > 1 else ''}")
    write_json(out / "evaluation.json", report)
    return report
