"""The data audit (``transferkit data audit``): near-duplicates across splits and label-issue candidates, from a
backbone's features (through the feature cache).

- Near-duplicates: every validation and test image is compared with every image of the splits before it (train;
  train and val) by the cosine similarity of the backbone's feature maps at its last block before the final
  downsampling, average-pooled to a 4 x 4 grid and centred on their mean. The pooled output features (what the
  head sees) are no good for it: they keep no layout, so two photos of one texture are as alike as a photo and
  its re-encoded copy (bench/audit.py). An image is flagged when its most similar earlier image stands out from
  its next lookalikes: the similarity to it exceeds the similarity to the third most similar by
  :data:`DUPLICATE_MARGIN` or more (a margin, not a similarity, because how alike distinct images look differs
  from backbone to backbone: 0.8 for one, 0.99 for another). This finds what ``transferkit data check``'s sha256
  cannot: the same photo re-encoded or resized.
- Label issues: confident learning (Northcutt et al. 2021, with the ``cleanlab`` library) on out-of-fold
  predicted probabilities: a logistic regression on the pooled output features of every split, 5-fold
  cross-validated, so that no image's probabilities come from a model that saw its label.

Measured in ``bench/audit.py``; the numbers are in docs/data.md.
"""
import csv
import importlib.util
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transferkit.data.sources import SPLIT_NAMES
from transferkit.errors import TransferkitError
from transferkit.probe import pooled
from transferkit.runs import write_atomic

DUPLICATE_MARGIN = 0.35  # chosen on bench/audit.py's seed 0, reported on other seeds (docs/data.md)
RIVALS = 3  # the margin is over the 3rd most similar image, so a duplicate copied twice is still found
GRID = 4  # feature maps are average-pooled to GRID x GRID cells
LABEL_C = 0.01  # the logistic regression's inverse regularisation, chosen on bench/audit.py's seed 0
SHOWN = 10  # findings of each kind printed and drawn; audit.csv has them all
COLUMNS = ("kind", "file", "split", "label", "suggestion", "score")


@dataclass(frozen=True)
class Finding:
    """One flagged image.

    Args:
        kind: ``duplicate`` (a near-duplicate of an image in an earlier split) or ``label`` (a label-issue
            candidate).
        split, index: where the image is (its position in the split).
        file: its file, relative to the data folder (folder sources), or ``#index``.
        label: its class name as given.
        suggestion: for ``label``, the class the out-of-fold model predicts; for ``duplicate``, the image it
            duplicates (``split #index`` for a source without files).
        score: for ``duplicate``, the margin (similarity to that image minus similarity to the third most
            similar); for ``label``, the out-of-fold probability of the given label (low is suspicious).
        match: for ``duplicate``, ``(split, index)`` of the image it duplicates.
    """

    kind: str
    split: str
    index: int
    file: str
    label: str
    suggestion: str
    score: float
    match: tuple = None


@dataclass
class AuditReport:
    """What :func:`audit_data` found (most suspicious first within each kind), and the files it wrote."""

    source: str
    features: str
    counts: dict
    findings: list = field(default_factory=list)
    accuracy: float = None  # of the out-of-fold predictions: low, and classes it cannot tell apart get flagged too
    files: list = field(default_factory=list)

    def of(self, kind):
        """The findings of ``kind``: ``duplicate`` or ``label``."""
        return [f for f in self.findings if f.kind == kind]

    def format(self):
        """A short summary for a terminal."""
        duplicates, labels = self.of("duplicate"), self.of("label")
        counts = ", ".join(f"{split} {n}" for split, n in self.counts.items())
        lines = [f"audit of {self.source}: {sum(self.counts.values())} images ({counts}); {self.features}", "",
                 f"near-duplicates across splits: {len(duplicates)} (margin >= {DUPLICATE_MARGIN:g} over the "
                 f"next lookalikes)"]
        lines += [f"  {f.file} ({f.split}) ~ {f.suggestion}  margin {f.score:.2f}" for f in duplicates[:SHOWN]]
        lines += _more(duplicates)
        lines += ["", f"label-issue candidates: {len(labels)} (confident learning on out-of-fold probabilities; "
                      f"their accuracy {self.accuracy:.3f})"]
        lines += [f"  {f.file} ({f.split}): labelled {f.label}, looks like {f.suggestion}  p(label) {f.score:.2f}"
                  for f in labels[:SHOWN]]
        lines += _more(labels)
        return "\n".join(lines)


def _more(findings):
    return [f"  ... and {len(findings) - SHOWN} more (audit.csv lists all)"] if len(findings) > SHOWN else []


def need_cleanlab():
    """Refuse at once, in one line, when cleanlab (the ``audit`` extra) is not installed."""
    if importlib.util.find_spec("cleanlab") is None:
        raise TransferkitError("data audit needs cleanlab: pip install 'transferkit[audit]'")


def duplicate_layer(base, block_ends):
    """The last of ``block_ends`` in ``base`` before its final downsampling (its maps twice the output's side).

    Example:
        >>> duplicate_layer(build_base("vgg16", "hed-bsds500", 64), BACKBONES["vgg16"].block_ends)
        'block4_pool'
    """
    final = base.output.shape[1]
    wider = [end for end in block_ends if base.get_layer(end).output.shape[1] > final]
    if not wider:
        raise TransferkitError(f"{base.name} has no block whose maps are larger than its output's; "
                               f"give a larger --image-size or another --backbone")
    return wider[-1]


def audit_features(recipe, splits):
    """``(pooled, layout, labels, layer)``: for each split, the pooled output features of the recipe's backbone
    (the entries ``feature_extraction`` makes and reuses), the grid-pooled maps of :func:`duplicate_layer`
    flattened, and the labels; all through the feature cache.

    Example:
        >>> pooled, layout, labels, layer = audit_features(load_recipe("folder", image_size=64), splits)
        >>> pooled["train"].shape, layout["train"].shape, layer
        ((250, 1280), (250, 1792), 'block5c_add')
    """
    import keras

    from transferkit.features import cache_key, cached_extract, extraction_batches, predictor
    from transferkit.layers import Preprocess
    from transferkit.strategies import Context
    from transferkit.strategies.feature_extraction import extract_split, feature_key
    from transferkit.weights import build_base

    ctx = Context(recipe, splits, verbose=0)
    base = build_base(recipe.backbone, recipe.weights, recipe.image_size, recipe.base_blocks)
    layer = duplicate_layer(base, ctx.spec.block_ends)
    inputs = keras.Input((recipe.image_size, recipe.image_size, 3))
    x = Preprocess(ctx.spec.preprocess)(inputs)
    whole = predictor(keras.Model(inputs, base(x, training=False)))
    bottom = keras.Model(base.input, base.get_layer(layer).output)
    maps = bottom(x, training=False)
    cells = keras.layers.AdaptiveAveragePooling2D(min(GRID, maps.shape[1]))(maps)
    grid = predictor(keras.Model(inputs, keras.layers.Flatten()(cells)))
    features, layout, labels = {}, {}, {}
    for split in SPLIT_NAMES:
        (output, labels[split]), _ = extract_split(ctx, whole, split)
        features[split] = pooled(output)
        batched = extraction_batches(splits.datasets[split], recipe.image_size, recipe.batch_size, recipe.data.resize)
        key = cache_key(features=feature_key(ctx, split, layer), grid=GRID)
        layout[split] = np.asarray(cached_extract(key, grid, batched)[0][0])
    return features, layout, {split: np.asarray(y) for split, y in labels.items()}, layer


def unit_rows(features):
    """Each split's rows centred on the mean of all of them and scaled to length 1, so that dot products are
    cosine similarities (centring spreads them: ReLU features all point into one orthant)."""
    mean = np.concatenate(list(features.values())).mean(axis=0)
    out = {}
    for split, x in features.items():
        x = x - mean
        out[split] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def near_duplicates(layout, margin=DUPLICATE_MARGIN, rivals=RIVALS, chunk=1024):
    """``[(split, index, match split, match index, margin)]`` for each validation or test image whose most
    similar image in an earlier split stands ``margin`` or more above the ``rivals``-th most similar, by
    cosine similarity of ``layout`` (``{split: (N, D)}``); largest margin first.

    Example:
        >>> near_duplicates({"train": a, "val": b, "test": c})[0]
        ('test', 17, 'train', 203, 0.52)
    """
    units = unit_rows(layout)
    found = []
    for at, split in enumerate(SPLIT_NAMES[1:], start=1):
        earlier = [(s, i) for s in SPLIT_NAMES[:at] for i in range(len(units[s]))]
        pool = np.concatenate([units[s] for s in SPLIT_NAMES[:at]])
        if len(pool) < 2:
            continue
        for start in range(0, len(units[split]), chunk):
            similarity = units[split][start:start + chunk] @ pool.T
            ranked = np.sort(similarity, axis=1)
            best = similarity.argmax(axis=1)
            gaps = ranked[:, -1] - ranked[:, -min(rivals, len(pool))]
            for row in np.flatnonzero(gaps >= margin):
                found.append((split, start + int(row), *earlier[best[row]], float(gaps[row])))
    return sorted(found, key=lambda item: -item[-1])


def out_of_fold(features, labels, seed=0):
    """Out-of-fold predicted probabilities ``(N, classes)`` of a logistic regression on standardised
    ``features``: each row from the model of the (up to 5 stratified) folds that left it out.

    Example:
        >>> out_of_fold(x, y).shape
        (490, 12)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)
    fewest = np.bincount(labels).min()
    if fewest < 2:
        raise TransferkitError("finding label issues needs at least 2 images of every class")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=LABEL_C, max_iter=1000))
    folds = StratifiedKFold(int(min(5, fewest)), shuffle=True, random_state=seed)
    # one BLAS thread: these products are small, and threads that wait for a busy core made the fits 40x slower
    # (measured on this 2-core machine under load)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # lbfgs convergence chatter
        return cross_val_predict(model, features, labels, cv=folds, method="predict_proba")


def label_issues(labels, probabilities):
    """``[(row, suggested class, probability of the given label)]`` of the label-issue candidates by confident
    learning (``cleanlab.filter.find_label_issues``) on out-of-fold ``probabilities`` (:func:`out_of_fold`);
    most suspicious first.

    Example:
        >>> label_issues(y, out_of_fold(x, y))[:1]
        [(131, 4, 0.02)]
    """
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels)
    rows = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    return [(int(row), int(probabilities[row].argmax()), float(probabilities[row, labels[row]])) for row in rows]


def audit_data(source, backbone=None, out="audit", overrides=(), data_dir=None, verbose=True):
    """Audit the data of ``source`` (a folder of images or a recipe) for near-duplicates across splits and label
    issues, with the features of ``backbone`` (default the recipe's; ``auto`` picks by linear probe), and write
    ``audit.csv`` and ``audit.png`` into ``out``.

    Example:
        >>> report = audit_data("photos", out="photos-audit")
        >>> [(f.file, f.suggestion) for f in report.of("label")][:1]
        [('train/cat/12.jpg', 'dog')]
    """
    from transferkit.api import prepare
    from transferkit.data.check import refuse_missing_folder

    need_cleanlab()
    refuse_missing_folder(source)
    recipe, splits, _ = prepare(source, strategy="feature_extraction", backbone=backbone, overrides=overrides,
                                data_dir=data_dir, verbose=verbose)
    features, layout, labels, layer = audit_features(recipe, splits)
    names = {split: splits.names(split) for split in SPLIT_NAMES}
    classes = splits.class_names
    findings = []
    for split, index, match_split, match, margin in near_duplicates(layout):
        other = names[match_split][match]
        findings.append(Finding("duplicate", split, index, names[split][index], classes[labels[split][index]],
                                other if splits.files else f"{match_split} {other}", margin, (match_split, match)))
    where = [(split, index) for split in SPLIT_NAMES for index in range(len(labels[split]))]
    every = np.concatenate([labels[s] for s in SPLIT_NAMES])
    probabilities = out_of_fold(np.concatenate([features[s] for s in SPLIT_NAMES]), every, recipe.seed)
    for row, suggested, given in label_issues(every, probabilities):
        split, index = where[row]
        findings.append(Finding("label", split, index, names[split][index], classes[labels[split][index]],
                                classes[suggested], given))
    blocks = f", blocks 1-{recipe.base_blocks}" if recipe.base_blocks else ""
    report = AuditReport(f"{recipe.data.source} {recipe.data.path or recipe.data.name or recipe.name}",
                         f"features of {recipe.backbone} ({recipe.weights}{blocks}) at {recipe.image_size} px, "
                         f"duplicates by {layer}", dict(splits.counts), findings,
                         float(np.mean(probabilities.argmax(axis=1) == every)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "audit.csv", findings_csv(findings))
    plot_findings(findings, splits, out / "audit.png", report.source)
    report.files = [str(out / "audit.csv"), str(out / "audit.png")]
    return report


def findings_csv(findings):
    """The findings as CSV text with :data:`COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for f in findings:
        writer.writerow([f.kind, f.file, f.split, f.label, f.suggestion, f"{f.score:.4f}"])
    return buffer.getvalue()


def _images(splits, wanted):
    """``{(split, index): uint8 image}`` for the ``wanted`` positions, one pass over each split that has some."""
    found = {}
    for split in SPLIT_NAMES:
        rows = {index for s, index in wanted if s == split}
        for index, (image, _) in enumerate(splits.datasets[split].as_numpy_iterator() if rows else ()):
            if index in rows:
                found[(split, index)] = image
    return found


def _side_by_side(a, b, height=96):
    from PIL import Image

    def scaled(image):
        picture = Image.fromarray(image)
        return np.asarray(picture.resize((max(1, round(picture.width * height / picture.height)), height)))

    gap = np.full((height, 4, 3), 255, np.uint8)
    return np.concatenate([scaled(a), gap, scaled(b)], axis=1)


def plot_findings(findings, splits, path, source):
    """A grid of the first :data:`SHOWN` findings of each kind: a duplicate beside the image it duplicates, a
    label issue with its given and suggested classes."""
    from transferkit.explain import image_grid

    shown = [f for kind in ("duplicate", "label") for f in [g for g in findings if g.kind == kind][:SHOWN]]
    images = _images(splits, {(f.split, f.index) for f in shown} | {f.match for f in shown if f.match})
    tiles, titles = [], []
    for f in shown:
        if f.kind == "duplicate":
            tiles.append(_side_by_side(images[(f.split, f.index)], images[f.match]))
            titles.append(f"near-duplicate, margin {f.score:.2f}\n{_short(f.file)}\n~ {_short(f.suggestion)}")
        else:
            tiles.append(images[(f.split, f.index)])
            titles.append(f"label issue, p {f.score:.2g}\n{_short(f.file)}\n{f.label} -> {f.suggestion}")
    if not tiles:
        tiles, titles = [np.full((8, 8, 3), 255, np.uint8)], ["nothing flagged"]
    return image_grid(tiles, titles, path, f"data audit of {source}", cols=5, cell=2.4)


def _short(name, width=28):
    return name if len(name) <= width else "..." + name[-(width - 3):]
