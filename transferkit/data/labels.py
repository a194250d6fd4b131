"""Labels and class names given in Python, checked and made class indices.

Labels may be integer class indices, whole-number floats, booleans, one-hot rows, or strings naming classes.
"""
import numpy as np

from transferkit.errors import TransferkitError


def checked_names(class_names):
    """``class_names`` as a tuple of distinct strings; one string or duplicates are refused.

    Example:
        >>> checked_names(["cat", "dog"])
        ('cat', 'dog')
    """
    if isinstance(class_names, (str, bytes)):
        raise TransferkitError(f"class_names must be a list of names, not one string ({class_names!r})")
    names = tuple(str(name) for name in class_names)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TransferkitError(f"class_names names a class twice: {', '.join(repeated)}")
    return names


def class_indices(labels_by_split, class_names=None):
    """``{split: labels}`` as ``({split: int32 class indices}, class names)``.

    Strings are looked up in ``class_names``, or without it name the classes in sorted order; numbers without
    ``class_names`` are named ``"0"``, ``"1"``, ... One-hot rows (N, C) become indices.

    Example:
        >>> indices, names = class_indices({"train": ["dog", "cat", "dog"]})
        >>> indices["train"].tolist(), names
        ([1, 0, 1], ('cat', 'dog'))
    """
    names = None if class_names is None else checked_names(class_names)
    flat = {split: _flat(split, labels) for split, labels in labels_by_split.items()}
    if any(labels.dtype.kind in "USO" for labels, _ in flat.values()):
        names = names or tuple(sorted({str(v) for labels, _ in flat.values() for v in labels}))
        return {split: _looked_up(split, labels, names) for split, (labels, _) in flat.items()}, names
    indices = {split: _whole(split, labels) for split, (labels, _) in flat.items()}
    top = max([int(labels.max()) for labels in indices.values() if labels.size] + [-1])
    if names is None:
        width = max([top + 1] + [columns for _, columns in flat.values()])
        return indices, tuple(str(i) for i in range(width))
    if top >= len(names):
        raise TransferkitError(f"label {top} has no class name ({len(names)} names given)")
    return indices, names


def _flat(split, labels):
    """(labels as a 1-D array, the number of one-hot columns or 0)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        if labels.dtype.kind in "biuf" and np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(1) == 1):
            return labels.argmax(1), labels.shape[1]
        raise TransferkitError(f"{split} labels have shape {labels.shape}: give one class index per image, or "
                               "one-hot rows")
    if labels.ndim > 1 and labels.size != len(labels):
        raise TransferkitError(f"{split} labels have shape {labels.shape}: give one class index per image")
    return labels.reshape(-1), 0


def _looked_up(split, labels, names):
    position = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(v) for v in labels} - position.keys())
    if unknown:
        raise TransferkitError(f"{split} labels name classes that class_names lacks: {', '.join(unknown[:5])}")
    return np.array([position[str(v)] for v in labels], np.int32)


def _whole(split, labels):
    if labels.dtype.kind == "b":
        labels = labels.astype(np.int32)
    if labels.dtype.kind == "f":
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if bad.size:
            raise TransferkitError(f"{split} labels must be class indices (whole numbers); found {bad[0]}")
    elif labels.dtype.kind not in "iu":
        raise TransferkitError(f"{split} labels must be class indices or class names; got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise TransferkitError(f"{split} labels must be class indices from 0 up; found {labels.min()}")
    return labels.astype(np.int32)
