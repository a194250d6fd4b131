"""The run directory: where a run's model, history, metrics and plots go, each written atomically."""
import csv
import hashlib
import io
import json
import os
import socket
import threading
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
        for x, _ in stage_changes(rows):
            ax.axvline(x, color="grey", linestyle=":", label="stage change")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def stage_changes(rows):
    """Where a history's stage changes: ``(epoch - 0.5, "old -> new")`` per change, to draw between epochs.

    Example:
        >>> stage_changes([{"epoch": 1, "stage": "head"}, {"epoch": 2, "stage": "finetune"}])
        [(1.5, 'head -> finetune')]
    """
    return [(row["epoch"] - 0.5, f"{rows[i - 1]['stage']} -> {row['stage']}")
            for i, row in enumerate(rows) if i and row["stage"] != rows[i - 1]["stage"]]


def save_figure(fig, path):
    """Write a matplotlib figure to ``path`` as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def save_predictions(run_dir, test_labels, test_probabilities, val_labels, val_probabilities):
    """Write the kept model's per-image answers on the test and validation splits to ``predictions.npz``
    (in split order): what paired tests, top losses and calibration are computed from."""
    buffer = io.BytesIO()
    np.savez(buffer, test_labels=np.asarray(test_labels, np.int32),
             test_probabilities=np.asarray(test_probabilities, np.float32),
             val_labels=np.asarray(val_labels, np.int32), val_probabilities=np.asarray(val_probabilities, np.float32))
    write_atomic(Path(run_dir) / "predictions.npz", buffer.getvalue())


def load_predictions(run_dir):
    """The per-image answers :func:`save_predictions` wrote, as a dict of arrays; a run from before they were
    kept is a one-line error.

    Example:
        >>> load_predictions("runs/demo-finetune-20261123-171500")["test_probabilities"].shape
        (300, 10)
    """
    path = Path(run_dir) / "predictions.npz"
    if not path.is_file():
        raise TransferkitError(f"{run_dir} holds no predictions.npz (made by transferkit before 2026-12-02); "
                               f"run it again")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def read_history(path):
    """History rows from a ``history.csv`` (numbers as floats, epoch as int), or [] if there is none."""
    if not Path(path).is_file():
        return []
    rows = []
    for row in csv.DictReader(Path(path).open()):
        parsed = {k: (v if k == "stage" else float(v)) for k, v in row.items() if v not in ("", None)}
        parsed["epoch"] = int(parsed["epoch"])
        rows.append(parsed)
    return rows


class RunTracker:
    """Keeps a run directory's ``run.json`` (status, stage, epoch) and ``history.csv`` current, epoch by epoch.

    Example:
        >>> tracker = RunTracker(run_dir)
        >>> tracker.set_status("running")
        >>> model.fit(..., callbacks=[tracker.callback("head")])
    """

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.history = read_history(self.run_dir / "history.csv")
        state_file = self.run_dir / "run.json"
        self.state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        self._earlier, self._started = self.state.get("elapsed_s", 0.0), time.time()

    def elapsed(self):
        """Seconds this run has taken so far, earlier attempts (before a resume) included."""
        return self._earlier + time.time() - self._started

    def set_status(self, status, **fields):
        """Record ``status`` (running, completed, failed, interrupted) and any extra fields in run.json."""
        self.state.update(status=status, updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          elapsed_s=round(self.elapsed(), 2), pid=os.getpid(), host=socket.gethostname(),
                          **fields)
        if status != "failed":
            self.state.pop("reason", None)
        write_json(self.run_dir / "run.json", self.state)

    def record(self, stage, epoch, logs):
        """Add (or replace, after a resume) the history row of ``epoch`` and persist it."""
        row = {"epoch": epoch, "stage": stage, **{k: float(v) for k, v in (logs or {}).items()}}
        self.history = [r for r in self.history if r["epoch"] != epoch] + [row]
        self.history.sort(key=lambda r: r["epoch"])
        write_atomic(self.run_dir / "history.csv", history_csv(self.history))
        self.set_status("running", stage=stage, epoch=epoch)

    def rows(self, stage):
        """The history rows of ``stage``."""
        return [row for row in self.history if row["stage"] == stage]

    def backup_dir(self, stage):
        """Where ``stage``'s checkpoint of its last completed epoch is kept, with its best and kept weights."""
        return self.run_dir / "backup" / stage


def checkpoint_callbacks(tracker, stage):
    """Callbacks that make ``stage`` resumable: a checkpoint (BackupAndRestore writing only what training
    changes) each epoch, history and status each epoch;
    and TensorBoard logs of every epoch (metrics and learning rate, epochs counted across stages) in
    ``RUN_DIR/logs``, so ``tensorboard --logdir runs`` shows every run side by side.

    Example:
        >>> model.fit(train, epochs=5, callbacks=checkpoint_callbacks(tracker, "head"))
    """
    import keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            tracker.record(stage, epoch + 1, {**(logs or {}), "seconds": time.perf_counter() - self.started})

    from transferkit.training.state import Checkpoint

    backup = Checkpoint(tracker.backup_dir(stage))
    board = keras.callbacks.TensorBoard(str(tracker.run_dir / "logs"), write_graph=False, profile_batch=0)
    return [Progress(), backup, board]  # history first, so a kill between the two re-runs the epoch


def run_key(recipe, splits):
    """A digest of the resolved recipe and the data: two runs with the same key are the same experiment."""
    digest = hashlib.sha256(recipe.to_yaml().encode())
    digest.update(splits.fingerprint.encode())
    return digest.hexdigest()[:16]


def find_completed(out, key):
    """The newest completed run directory in ``out`` with this run key, or None. A run from before runs kept
    ``predictions.npz`` does not count: its answers cannot be paired with other runs'."""
    found = []
    for state_file in Path(out).glob("*/run.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        kept = all((state_file.parent / name).is_file() for name in ("metrics.json", "predictions.npz"))
        if state.get("key") == key and state.get("status") == "completed" and kept:
            found.append(state_file.parent)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


class PeakMemory:
    """The peak resident memory of this process while the ``with`` block runs, sampled every 50 ms.

    Example:
        >>> with PeakMemory() as memory:
        ...     model.fit(...)
        >>> memory.peak_mb
        1843.2
    """

    def __init__(self, interval=0.05):
        import psutil

        self._process, self._interval = psutil.Process(), interval
        self.peak_mb = 0.0
        self._done = threading.Event()

    def _sample(self):
        while True:
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 1e6)
            if self._done.wait(self._interval):
                return

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        return False
