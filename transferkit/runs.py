"""The run directory: where a run's model, history, metrics and plots go, each written atomically."""
import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from transferkit.errors import TransferkitError


def new_run_dir(out, recipe_name, strategy):
    """Create ``out/<recipe>-<strategy>-<YYYYmmdd-HHMMSS>`` (with a suffix if that exists already).

    Example:
        >>> new_run_dir("runs", "demo", "finetune")
        PosixPath('runs/demo-finetune-20261123-171500')
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{recipe_name}-{strategy}-{stamp}"
    path, n = base, 1
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
    except OSError as err:
        raise TransferkitError(f"cannot create a run folder in {out}: {err.strerror or err}") from err


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def save_model(model, path):
    """Save a Keras model to ``path`` (.keras) atomically."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def history_csv(rows):
    """History rows (dicts) as CSV text, with the union of their keys as columns."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def plot_history(rows, path, title):
    """Training and validation accuracy and loss per epoch, stages marked, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [row["epoch"] for row in rows]
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "o-"), ("val_", "s--")):
            values = [row.get(prefix + metric, np.nan) for row in rows]
            ax.plot(epochs, values, style, label=f"{'validation' if prefix else 'training'} {metric}", markersize=3)
        starts = [row["epoch"] - 0.5 for i, row in enumerate(rows) if i and row["stage"] != rows[i - 1]["stage"]]
        for x in starts:
            ax.axvline(x, color="grey", linestyle=":", label="stage change")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")
