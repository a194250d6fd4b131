"""What a stage's training changes, saved and restored fast: the weights of the layers that train and the
optimizer's variables, as one ``.npz``. A frozen layer's weights never change during ``fit`` (its BatchNorm
runs in inference mode), and a resumed run rebuilds them from their source, so they are not written: for a
frozen VGG16 base that is 59 MB an epoch left unwritten.

Example:
    >>> save_state("head.npz", model)            # after an epoch
    >>> load_state("head.npz", rebuilt_model)    # the same architecture, rebuilt from the recipe
"""
import contextlib
import json
import os
import zipfile

import keras
import numpy as np


def changing(model):
    """Indices into ``model.weights`` of the weights ``fit`` can change: every weight of a layer that trains.

    Example:
        >>> base.trainable = False; len(changing(model)) < len(model.weights)
        True
    """
    trains = set()
    for layer in _leaves(model):
        if layer.trainable:
            trains.update(id(weight) for weight in layer.weights)
    return [i for i, weight in enumerate(model.weights) if id(weight) in trains]


def _leaves(layer):
    inner = getattr(layer, "layers", None)
    if not inner:
        yield layer
        return
    for sub in inner:
        yield from _leaves(sub)


def save_state(path, model, weights=None, optimizer=True, extra=None):
    """Write the changing weights of ``model`` (or of ``weights``, a full ``get_weights()``-style list, e.g.
    the best epoch's), with ``optimizer`` the optimizer's variables, and the numbers in ``extra`` to ``path``,
    atomically."""
    indices = changing(model)
    arrays = {"indices": np.asarray(indices, dtype=np.int64), "count": np.asarray(len(model.weights)),
              **{key: np.asarray(value) for key, value in (extra or {}).items()}}
    # only the changing weights are copied out of the model: a frozen base's never leave it
    arrays.update({f"w{i}": keras.ops.convert_to_numpy(model.weights[i]) if weights is None else
                   np.asarray(weights[i]) for i in indices})
    if optimizer and model.optimizer is not None and model.optimizer.built:
        arrays.update({f"o{j}": keras.ops.convert_to_numpy(v) for j, v in enumerate(model.optimizer.variables)})
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def read_weights(path, model):
    """``model.get_weights()`` with the weights saved in ``path`` in place; a damaged file is an ``OSError``."""
    weights = model.get_weights()
    with _opened(path) as saved:
        if int(saved["count"]) != len(weights):
            raise OSError(f"{path} was saved from another model ({int(saved['count'])} weights, not {len(weights)})")
        for i in saved["indices"]:
            weights[i] = saved[f"w{i}"]
    return weights


def load_state(path, model):
    """Put the weights and optimizer variables saved in ``path`` back into ``model`` (its optimizer is built
    first if need be)."""
    model.set_weights(read_weights(path, model))
    optimizer = model.optimizer
    if optimizer is None:
        return
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    with _opened(path) as saved:
        for j, variable in enumerate(optimizer.variables):
            if f"o{j}" in saved.files:
                variable.assign(saved[f"o{j}"])


@contextlib.contextmanager
def _opened(path):
    try:
        saved = np.load(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise OSError(f"{path} is damaged: {err}") from err
    with saved:
        yield saved


def checkpoint_epoch(backup_dir):
    """The epoch (0-based, counted across stages) a stage checkpointed in ``backup_dir`` continues at, or None.

    Example:
        >>> checkpoint_epoch("runs/x/backup/head")   # 3 after a kill during the head stage's fourth epoch
    """
    path = os.path.join(str(backup_dir), Checkpoint.STATE)
    if os.path.exists(path):
        with _opened(path) as saved:
            return int(saved["epoch"])
    legacy = os.path.join(str(backup_dir), "training_metadata.json")  # written by an earlier transferkit
    if os.path.exists(legacy):
        with open(legacy) as f:
            return int(json.load(f)["epoch"])
    return None


class Checkpoint(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` (every epoch), writing only what training changes (:func:`save_state`) with
    the epoch inside the same file, replaced atomically: the weights and the epoch they belong to never
    disagree, and a kill mid-write leaves the previous checkpoint whole.

    Example:
        >>> model.fit(train, epochs=5, callbacks=[Checkpoint("runs/x/backup/head")])
    """

    STATE = "latest.state.npz"

    def __init__(self, backup_dir):
        super().__init__(str(backup_dir), delete_checkpoint=False)
        self._state_path = os.path.join(self.backup_dir, self.STATE)

    def _load_model(self):
        if not os.path.exists(self._state_path):
            return super()._load_model()  # nothing yet, or a checkpoint written by an earlier transferkit
        load_state(self._state_path, self.model)
        with _opened(self._state_path) as saved:
            self.model._initial_epoch = int(saved["epoch"])

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        save_state(self._state_path, self.model, extra={"epoch": self._current_epoch})
