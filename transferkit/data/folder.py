"""A folder of images as a data source: one subfolder per class, either split already or split here."""
import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from transferkit.data.sources import DATA_SOURCES, SPLIT_NAMES, Splits, check_classes
from transferkit.errors import TransferkitError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
_SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}


def _class_files(folder):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {c: sorted(str(f) for f in (folder / c).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            for c in classes}


def _split_dirs(root):
    found = {}
    for split, aliases in _SPLIT_ALIASES.items():
        found[split] = next((root / a for a in aliases if (root / a).is_dir()), None)
    return found if found["train"] else None


def split_files(files_by_class, val_fraction, test_fraction, seed):
    """Split each class's files by fractions with ``seed``; the same seed gives the same split anywhere.

    Example:
        >>> split_files({"cat": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]}, 0.25, 0.25, seed=0)["test"]
        [('d.jpg', 0)]
    """
    out = {name: [] for name in SPLIT_NAMES}
    for label, (_, files) in enumerate(sorted(files_by_class.items())):
        order = np.random.default_rng(seed).permutation(len(files))
        n_test, n_val = int(round(len(files) * test_fraction)), int(round(len(files) * val_fraction))
        picked = [files[i] for i in order]
        out["test"] += [(f, label) for f in picked[:n_test]]
        out["val"] += [(f, label) for f in picked[n_test:n_test + n_val]]
        out["train"] += [(f, label) for f in picked[n_test + n_val:]]
    return out


def _decode(path, label):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return image, label


def _dataset(pairs):
    paths = [p for p, _ in pairs]
    labels = np.array([label for _, label in pairs], np.int32)
    return tf.data.Dataset.from_tensor_slices((paths, labels)).map(_decode, num_parallel_calls=tf.data.AUTOTUNE)


def _fingerprint(pairs_by_split, root):
    digest = hashlib.sha256()
    for split in SPLIT_NAMES:
        for path, label in pairs_by_split[split]:
            digest.update(f"{split}:{label}:{Path(path).relative_to(root)}:".encode())
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()[:16]


@DATA_SOURCES.register("folder")
def folder_source(config, seed):
    """Images under ``data.path``: ``train/ val/ test/`` subfolders of class folders, or class folders split
    by ``data.val_fraction`` and ``data.test_fraction`` with the recipe's seed (stratified, deterministic).

    Example:
        >>> splits = folder_source(DataConfig(source="folder", path="photos"), seed=42)
    """
    if not config.path:
        raise TransferkitError("data.source 'folder' needs data.path (or --data FOLDER)")
    root = Path(config.path).expanduser()
    if not root.is_dir():
        raise TransferkitError(f"data folder not found: {root}")
    split_dirs = _split_dirs(root)
    if split_dirs:
        by_split = {s: _class_files(d) if d else {} for s, d in split_dirs.items()}
        class_names = sorted(by_split["train"])
        for split, classes in by_split.items():
            if classes and sorted(classes) != class_names:
                raise TransferkitError(f"{split_dirs[split]} has classes {sorted(classes)}, train has {class_names}")
        if not (split_dirs["val"] and split_dirs["test"]):
            raise TransferkitError(f"{root} has train/ but not both val/ and test/ folders")
        pairs = {s: [(f, i) for i, c in enumerate(class_names) for f in by_split[s][c]] for s in SPLIT_NAMES}
    else:
        files = _class_files(root)
        class_names = sorted(files)
        empty = [c for c, f in files.items() if not f]
        if empty:
            raise TransferkitError(f"class folder{'s' if len(empty) > 1 else ''} without images in {root}: "
                                   f"{', '.join(empty)}")
        pairs = split_files(files, config.val_fraction, config.test_fraction, seed)
    if not class_names:
        raise TransferkitError(f"no class subfolders in {root}: put each class's images in a folder of its own")
    counts = {s: len(pairs[s]) for s in SPLIT_NAMES}
    check_classes(counts, class_names, 0)
    datasets = {s: _dataset(pairs[s]) for s in SPLIT_NAMES}
    return Splits(datasets, counts, tuple(class_names), _fingerprint(pairs, root))
