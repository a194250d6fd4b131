"""Where a run goes wrong (``transferkit inspect``), as fastai's ``plot_top_losses`` and ``most_confused``: the
test images with the highest loss, and the class pairs the model confuses most, from the run's kept per-image
answers (``predictions.npz``) and its re-loaded test split.

Example:
    >>> found = inspect_run("runs/photos-finetune-20261202-101500", top=9)
    >>> found["confused"][0], found["files"]
"""
import csv
import io
from pathlib import Path

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.runs import load_predictions, save_figure, write_atomic

_CHECK_TOLERANCE = 1e-3  # re-predicted and kept probabilities differ by float rounding only


def losses(labels, probabilities):
    """Each image's cross-entropy loss: minus the log of the probability of its true class.

    Example:
        >>> losses([0, 1], np.array([[0.9, 0.1], [0.8, 0.2]])).round(3)
        array([0.105, 1.609])
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, np.float64)
    return -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0))


def top_losses(labels, probabilities, top=9):
    """The positions of the ``top`` images with the highest loss, highest first (ties in split order).

    Example:
        >>> top_losses([0, 1, 1], np.array([[.9, .1], [.8, .2], [.4, .6]]), top=2)
        array([1, 2])
    """
    return np.argsort(-losses(labels, probabilities), kind="stable")[:top]


def most_confused(labels, probabilities, class_names, min_count=1):
    """``[(actual, predicted, count)]`` of the off-diagonal cells of the confusion matrix holding at least
    ``min_count`` images, most first, as fastai's ``most_confused``.

    Example:
        >>> most_confused([0, 0, 1], np.array([[.2, .8], [.1, .9], [.3, .7]]), ["cat", "dog"])
        [('cat', 'dog', 2)]
    """
    labels, predicted = np.asarray(labels), np.asarray(probabilities).argmax(axis=1)
    matrix = np.zeros((len(class_names), len(class_names)), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    np.fill_diagonal(matrix, 0)
    pairs = [(class_names[a], class_names[p], int(matrix[a, p])) for a, p in zip(*np.nonzero(matrix >= min_count))]
    return sorted(pairs, key=lambda pair: -pair[2])


def _test_images(run_dir, class_names, wanted):
    """The re-loaded test split's names and labels, and the images at positions ``wanted``."""
    from transferkit.evaluation import run_splits

    splits = run_splits(run_dir, class_names, instead="inspect needs the run's test images in the order it kept them")
    images, labels = {}, []
    for index, (image, label) in enumerate(splits.datasets["test"].as_numpy_iterator()):
        labels.append(int(label))
        if index in wanted:
            images[index] = image
    return splits.names("test"), np.asarray(labels), images


def _check_order(run_dir, kept, labels, images):
    """Refuse when the re-loaded test split is not the one ``predictions.npz`` was made on: other labels in
    order, or the model's answers on the images shown differ from the kept ones."""
    from transferkit.predict import load

    if not np.array_equal(labels, kept["test_labels"]):
        raise TransferkitError(f"the test split {run_dir} re-loads now has other labels than its predictions.npz: "
                               f"the data changed since the run")
    order = sorted(images)
    again = load(run_dir).predict([images[i] for i in order])
    gap = float(np.abs(again - kept["test_probabilities"][order]).max())
    if gap > _CHECK_TOLERANCE:
        raise TransferkitError(f"the model's answers on the re-loaded test images differ from predictions.npz "
                               f"(by up to {gap:.3g}): the images changed since the run")


def plot_confused(pairs, path, title, shown=15):
    """The most confused pairs as horizontal bars (``actual -> predicted``, count), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = pairs[:shown]
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.35 * max(1, len(pairs))))
    if pairs:
        ax.barh(range(len(pairs)), [count for _, _, count in pairs], color="tab:red")
        ax.set_yticks(range(len(pairs)), [f"{actual} -> {predicted}" for actual, predicted, _ in pairs])
        ax.invert_yaxis()
        ax.set_xlabel("test images (actual -> predicted)")
    else:
        ax.text(0.5, 0.5, "no test image misclassified", ha="center", va="center")
        ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _csv(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def inspect_run(run_dir, top=9, out=None):
    """The ``top`` test images of the run in ``run_dir`` with the highest loss, and the class pairs it confuses
    most, from its ``predictions.npz`` and its test split re-loaded from ``recipe.yaml`` (checked to be the same
    images in the same order: same labels, same answers from the model on the images shown).

    Writes ``top_losses.png`` (image, predicted and actual class with their probabilities, loss),
    ``top_losses.csv``, ``confused.csv``, ``confused.png`` and ``report.html`` (the two pictures and both tables,
    self-contained) to ``out`` (default ``RUN_DIR/inspect``).

    Example:
        >>> found = inspect_run("runs/photos-finetune-20261202-101500", top=4)
        >>> found["top_losses"][0]
        {'index': 17, 'file': 'cat/31.jpg', 'actual': 'cat', 'predicted': 'dog', 'loss': 4.61,
         'p_actual': 0.01, 'p_predicted': 0.99}
        >>> found["confused"][:1]
        [{'actual': 'cat', 'predicted': 'dog', 'count': 6}]
    """
    import json

    from transferkit.explain import image_grid

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise TransferkitError(f"{run_dir} is not a completed run directory (no metrics.json)")
    kept = load_predictions(run_dir)
    class_names = json.loads((run_dir / "metrics.json").read_text())["class_names"]
    labels, probabilities = kept["test_labels"], kept["test_probabilities"]
    worst = top_losses(labels, probabilities, top)
    names, loaded, images = _test_images(run_dir, class_names, set(worst.tolist()))
    _check_order(run_dir, kept, loaded, images)
    loss = losses(labels, probabilities)
    rows = [{"index": int(i), "file": names[i], "actual": class_names[labels[i]],
             "predicted": class_names[probabilities[i].argmax()], "loss": round(float(loss[i]), 4),
             "p_actual": round(float(probabilities[i, labels[i]]), 4),
             "p_predicted": round(float(probabilities[i].max()), 4)} for i in worst]
    pairs = most_confused(labels, probabilities, class_names)
    out = Path(out) if out else run_dir / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    titles = [f"{row['file'][-30:]}\npredicted {row['predicted']} {row['p_predicted']:.2f}\n"
              f"actual {row['actual']} {row['p_actual']:.2f}\nloss {row['loss']:.2f}" for row in rows]
    image_grid([images[i] for i in worst], titles, out / "top_losses.png",
               f"{run_dir.name}: the {len(rows)} test images with the highest loss", cols=5, cell=2.2)
    write_atomic(out / "top_losses.csv", _csv(list(rows[0]) if rows else ["index"], [r.values() for r in rows]))
    write_atomic(out / "confused.csv", _csv(["actual", "predicted", "count"], pairs))
    plot_confused(pairs, out / "confused.png", f"{run_dir.name}: most confused of {len(labels)} test images")
    found = {"run_dir": str(run_dir), "test_images": len(labels), "top_losses": rows,
             "confused": [{"actual": a, "predicted": p, "count": n} for a, p, n in pairs],
             "files": [str(out / name) for name in ("top_losses.png", "top_losses.csv", "confused.csv", "confused.png",
                                                    "report.html")]}
    write_atomic(out / "report.html", _report(found, out))
    return found


def _report(found, out):
    """One self-contained HTML page: the top-loss grid and its table, the confused pairs and their chart."""
    import base64
    import html

    def table(rows):
        if not rows:
            return "<p>none</p>"
        head = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
                       for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def picture(name):
        data = base64.b64encode((out / name).read_bytes()).decode()
        return f'<img alt="{name}" src="data:image/png;base64,{data}">'

    title = html.escape(f"{Path(found['run_dir']).name}: inspection of {found['test_images']} test images")
    return (f"<!doctype html><meta charset=utf-8><title>{title}</title><style>body{{font-family:sans-serif;"
            f"margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}"
            f"img{{max-width:100%}}</style><h1>{title}</h1><h2>Highest loss</h2>{picture('top_losses.png')}"
            f"{table(found['top_losses'])}<h2>Most confused</h2>{picture('confused.png')}{table(found['confused'])}")
