"""A folder of images as a data source: one subfolder per class, either split already or split here.

Every file is checked before training (:func:`~transferkit.data.images.check_images`): unreadable ones are
skipped with one warning line, or refused up front with ``data.strict: true``.
"""
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from transferkit.data.images import IMAGE_SUFFIXES, check_images, decode_file
from transferkit.data.sources import DATA_SOURCES, SPLIT_NAMES, Splits, check_classes, label_counts
from transferkit.errors import TransferkitError

_SPLIT_ALIASES = {"train": ("train",), "val": ("val", "validation", "valid"), "test": ("test",)}


def class_files(folder):
    """``{class name: sorted image paths}`` for the class subfolders of ``folder``.

    Example:
        >>> sorted(class_files(Path("photos")))
        ['cat', 'dog']
    """
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


@dataclass(frozen=True)
class FolderListing:
    """The image files of a data folder, by split: ``pairs[split]`` is a list of ``(path, label)``."""

    root: Path
    class_names: tuple
    pairs: dict


def list_folder(config, seed):
    """The files a ``folder`` data section names, split into train/val/test (by ``data.split_seed``, else ``seed``)
    before any is read.

    Example:
        >>> list_folder(DataConfig(source="folder", path="photos"), seed=42).class_names
        ('cat', 'dog')
    """
    if not config.path:
        raise TransferkitError("data.source 'folder' needs data.path (or --data FOLDER)")
    root = Path(config.path).expanduser()
    if root.is_file():
        raise TransferkitError(f"data must be a folder of class subfolders; {root} is a file")
    if not root.is_dir():
        raise TransferkitError(f"data folder not found: {root}")
    split_dirs = _split_dirs(root)
    if split_dirs:
        by_split = {s: class_files(d) if d else {} for s, d in split_dirs.items()}
        class_names = sorted(by_split["train"])
        for split, classes in by_split.items():
            if classes and sorted(classes) != class_names:
                raise TransferkitError(f"{split_dirs[split]} has classes {sorted(classes)}, train has {class_names}")
        if not (split_dirs["val"] and split_dirs["test"]):
            raise TransferkitError(f"{root} has train/ but not both val/ and test/ folders")
        pairs = {s: [(f, i) for i, c in enumerate(class_names) for f in by_split[s][c]] for s in SPLIT_NAMES}
    else:
        files = class_files(root)
        class_names = sorted(files)
        empty = [c for c, f in files.items() if not f]
        if empty:
            raise TransferkitError(f"class folder{'s' if len(empty) > 1 else ''} without images in {root}: "
                                   f"{', '.join(empty)}")
        split_seed = seed if config.split_seed is None else config.split_seed
        pairs = split_files(files, config.val_fraction, config.test_fraction, split_seed)
    if not class_names:
        raise TransferkitError(f"no class subfolders in {root}: put each class's images in a folder of its own")
    return FolderListing(root, tuple(class_names), pairs)


def files_dataset(pairs, checks=None):
    """Unbatched ``(uint8 image, label)`` pairs from ``(path, label)`` files that passed ``checks``
    (a list of :class:`~transferkit.data.images.ImageCheck`, in ``pairs`` order; checked here if None)."""
    if checks is None:
        checks = check_images([p for p, _ in pairs])
        skipped = sum(c.error is not None for c in checks)
        if skipped:
            print(f"warning: skipped {skipped} unreadable image{'s' if skipped > 1 else ''}", file=sys.stderr)
    kept = [(check, label) for check, (_, label) in zip(checks, pairs) if check.error is None]
    paths = [c.path for c, _ in kept]
    via_pil = np.array([c.via_pil for c, _ in kept], bool)
    labels = np.array([label for _, label in kept], np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, via_pil, labels))
    return ds.map(lambda p, v, y: (decode_file(p, v), y), num_parallel_calls=tf.data.AUTOTUNE)


def unreadable_summary(bad_by_split):
    """``"3 unreadable images in train (2), test (1)"`` for ``{split: [ImageCheck, ...]}``, or "" if none."""
    total = sum(len(bad) for bad in bad_by_split.values())
    if not total:
        return ""
    where = [(split, len(bad)) for split, bad in bad_by_split.items() if bad]
    places = where[0][0] if len(where) == 1 else ", ".join(f"{split} ({n})" for split, n in where)
    return f"{total} unreadable image{'s' if total > 1 else ''} in {places}"


def _fingerprint(pairs_by_split, checks, root):
    digest = hashlib.sha256()
    for split in SPLIT_NAMES:
        for path, label in pairs_by_split[split]:
            digest.update(f"{split}:{label}:{Path(path).relative_to(root)}:".encode())
            digest.update(bytes.fromhex(checks[path].sha256))
    return digest.hexdigest()[:16]


@DATA_SOURCES.register("folder")
def folder_source(config, seed):
    """Images under ``data.path``: ``train/ val/ test/`` subfolders of class folders, or class folders split
    by ``data.val_fraction`` and ``data.test_fraction`` with the recipe's seed or ``data.split_seed`` (stratified,
    deterministic).

    Unreadable files (corrupt, truncated, empty, not images) are skipped with one warning line on stderr;
    with ``data.strict`` they stop the run before training.

    Example:
        >>> splits = folder_source(DataConfig(source="folder", path="photos"), seed=42)
    """
    listing = list_folder(config, seed)
    paths = [path for split in SPLIT_NAMES for path, _ in listing.pairs[split]]
    checks = dict(zip(paths, check_images(paths)))
    bad = {s: [checks[p] for p, _ in listing.pairs[s] if checks[p].error] for s in SPLIT_NAMES}
    summary = unreadable_summary(bad)
    if summary and config.strict:
        first = next(c for found in bad.values() for c in found)
        raise TransferkitError(f"{summary} of {listing.root} (first: {first.path}: {first.error}); "
                               f"see transferkit data check {listing.root}, or set data.strict=false to skip them")
    if summary:
        print(f"warning: skipped {summary} of {listing.root} (see transferkit data check {listing.root})",
              file=sys.stderr)
    pairs = {s: [(p, label) for p, label in listing.pairs[s] if not checks[p].error] for s in SPLIT_NAMES}
    counts = {s: len(pairs[s]) for s in SPLIT_NAMES}
    num_classes = len(listing.class_names)
    per_class = {s: label_counts([label for _, label in pairs[s]], num_classes) for s in SPLIT_NAMES}
    check_classes(counts, listing.class_names, per_class["train"])  # also after unreadable files are skipped
    datasets = {s: files_dataset(pairs[s], [checks[p] for p, _ in pairs[s]]) for s in SPLIT_NAMES}
    files = {s: [str(Path(p).relative_to(listing.root)) for p, _ in pairs[s]] for s in SPLIT_NAMES}
    return Splits(datasets, counts, listing.class_names, _fingerprint(pairs, checks, listing.root), per_class, files)
