"""The pre-flight data check: images per class per split, unreadable files, exact duplicates across splits,
class imbalance with suggested class weights (``transferkit data check``).
"""
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from transferkit.data.balance import balanced_weights
from transferkit.data.folder import list_folder
from transferkit.data.images import check_images
from transferkit.data.sources import SPLIT_NAMES, label_counts, load_data
from transferkit.errors import TransferkitError
from transferkit.recipes import DataConfig, Recipe, load_recipe

IMBALANCE_LIMIT = 1.5  # largest / smallest training class above this is reported
_SHOWN = 20  # items per section in the human-readable report


@dataclass
class DataReport:
    """What :func:`check_data` found. ``problems`` is empty when the data is clean.

    Args:
        source: what was checked, e.g. ``"folder photos"``.
        class_names: the classes, in label order.
        counts: split -> images per class (readable images only).
        unreadable: ``(split, path, reason)`` for each file that cannot be decoded.
        duplicates: groups of identical images found in more than one split, each a list of ``(split, name)``.
    """

    source: str
    class_names: tuple
    counts: dict
    unreadable: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)

    @property
    def class_weights(self):
        """Suggested ``data.class_weight`` per class: ``n_samples / (n_classes * count_c)`` of the train split."""
        return dict(zip(self.class_names, balanced_weights(self.counts["train"])))

    @property
    def imbalance(self):
        """Largest over smallest training class (infinite if a class has no training image)."""
        train = self.counts["train"]
        return max(train) / min(train) if min(train) else float("inf")

    @property
    def problems(self):
        """One short sentence per kind of problem found."""
        found = []
        if self.unreadable:
            found.append(f"{len(self.unreadable)} unreadable file{'s' * (len(self.unreadable) > 1)}")
        if self.duplicates:
            found.append(f"{len(self.duplicates)} image{'s' * (len(self.duplicates) > 1)} in more than one split")
        empty = [f"{c} in {s}" for s in SPLIT_NAMES for c, n in zip(self.class_names, self.counts[s]) if not n]
        if empty:
            found.append(f"classes without images: {', '.join(empty)}")
        if len(self.class_names) < 2:
            found.append(f"only {len(self.class_names)} class: a classifier needs at least 2")
        if self.imbalance > IMBALANCE_LIMIT and min(self.counts["train"]):  # an empty class is said above
            found.append(f"class imbalance {self.imbalance:.1f}x in train")
        return found

    def to_dict(self):
        """The report as plain data, for ``--json``."""
        return {
            "source": self.source,
            "classes": list(self.class_names),
            "counts": {s: dict(zip(self.class_names, self.counts[s])) for s in SPLIT_NAMES},
            "unreadable": [{"split": s, "path": p, "reason": r} for s, p, r in self.unreadable],
            "duplicates_across_splits": [[{"split": s, "image": name} for s, name in group]
                                         for group in self.duplicates],
            "imbalance": None if self.imbalance == float("inf") else round(self.imbalance, 3),
            "class_weights": self.class_weights,
            "problems": self.problems,
        }

    def format(self):
        """The report as text for a terminal."""
        width = max(8, *(len(c) for c in self.class_names))
        lines = [f"data: {self.source}, {len(self.class_names)} classes", "",
                 f"  {'':{width}s} " + " ".join(f"{s:>7s}" for s in SPLIT_NAMES)]
        for i, name in enumerate(self.class_names):
            lines.append(f"  {name:{width}s} " + " ".join(f"{self.counts[s][i]:7d}" for s in SPLIT_NAMES))
        lines.append(f"  {'total':{width}s} " + " ".join(f"{sum(self.counts[s]):7d}" for s in SPLIT_NAMES))
        if self.unreadable:
            lines += ["", f"unreadable files: {len(self.unreadable)} (training skips them; data.strict=true "
                          f"stops instead)"]
            lines += [f"  {path}: {reason}" for _, path, reason in self.unreadable[:_SHOWN]]
            lines += _more(self.unreadable)
        if self.duplicates:
            lines += ["", f"exact duplicates across splits: {len(self.duplicates)} image"
                          f"{'s' * (len(self.duplicates) > 1)} (identical bytes) in more than one split, so "
                          f"validation and test scores are inflated"]
            lines += ["  " + " = ".join(f"{s}: {name}" for s, name in group) for group in self.duplicates[:_SHOWN]]
            lines += _more(self.duplicates)
        weights = "  ".join(f"{c} {w:g}" for c, w in self.class_weights.items())
        if self.imbalance > IMBALANCE_LIMIT and min(self.counts["train"]):
            lines += ["", f"class imbalance in train: largest / smallest class {self.imbalance:.1f}x; "
                          f"set data.class_weight: auto, which weighs the classes",
                      f"  {weights}   (n_samples / (n_classes * count))"]
        lines += ["", f"problems: {'; '.join(self.problems)}" if self.problems else "no problems found"]
        return "\n".join(lines)


def _more(items):
    return [f"  ... and {len(items) - _SHOWN} more (--json lists all)"] if len(items) > _SHOWN else []


def _cross_split(entries):
    """Groups of ``(split, name)`` sharing a digest and spanning more than one split."""
    groups = defaultdict(list)
    for split, name, digest in entries:
        groups[digest].append((split, name))
    return [group for group in groups.values() if len({split for split, _ in group}) > 1]


def _check_folder(config, seed):
    listing = list_folder(config, seed)
    pairs = [(split, path, label) for split in SPLIT_NAMES for path, label in listing.pairs[split]]
    checks = check_images([path for _, path, _ in pairs])
    counts = {s: [0] * len(listing.class_names) for s in SPLIT_NAMES}
    unreadable, entries = [], []
    for (split, path, label), check in zip(pairs, checks):
        if check.error:
            unreadable.append((split, path, check.error))
        else:
            counts[split][label] += 1
            entries.append((split, str(Path(path).relative_to(listing.root)), check.sha256))
    return DataReport(f"folder {listing.root}", listing.class_names, {s: tuple(c) for s, c in counts.items()},
                      unreadable, _cross_split(entries))


def _check_decoded(config, seed):
    splits = load_data(config, seed)
    counts, entries = {}, []
    for split in SPLIT_NAMES:
        labels = []
        for index, (image, label) in enumerate(splits.datasets[split].as_numpy_iterator()):
            labels.append(label)
            digest = hashlib.sha256(str(image.shape).encode() + image.tobytes()).hexdigest()
            entries.append((split, f"#{index} ({splits.class_names[label]})", digest))
        counts[split] = label_counts(labels, splits.num_classes)
    name = f" {config.name}" if config.name else ""
    return DataReport(f"{config.source}{name}", splits.class_names, counts, [], _cross_split(entries))


def check_data(config, seed=42):
    """Check a recipe's data section. A folder is checked file by file (unreadable files listed with the
    reason, duplicates by the sha256 of their bytes); other sources by their decoded pixels.

    Example:
        >>> report = check_data(DataConfig(source="folder", path="photos"))
        >>> report.problems
        ['2 unreadable files', 'class imbalance 2.0x in train']
    """
    return _check_folder(config, seed) if config.source == "folder" else _check_decoded(config, seed)


def refuse_missing_folder(source):
    """A one-line error for a ``source`` that names a path (it has a ``/``) but neither a folder nor a YAML file,
    rather than "unknown recipe"."""
    if "/" in str(source) and not Path(source).is_dir() and Path(source).suffix not in (".yaml", ".yml"):
        raise TransferkitError(f"folder not found: {source}")


def recipe_for(source, overrides=(), data_dir=None):
    """The recipe that ``transferkit data`` commands work on: a shipped recipe name, a YAML path, or a folder
    of images (default settings, ``data.source: folder``); ``overrides`` as ``--set`` takes them.

    Example:
        >>> recipe_for("photos").data.source
        'folder'
    """
    recipe = source
    if Path(source).is_dir():
        recipe = Recipe(name=Path(source).resolve().name, data=DataConfig(source="folder", path=str(source)))
    else:
        refuse_missing_folder(source)
    overrides = [*overrides, f"data.data_dir={data_dir}"] if data_dir else list(overrides)
    return load_recipe(recipe, overrides)
