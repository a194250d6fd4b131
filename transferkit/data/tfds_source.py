"""TensorFlow Datasets as a data source, with split slicing, per-class subsets and a fast offline failure."""
import os

import tensorflow as tf

from transferkit.data.sources import DATA_SOURCES, SPLIT_NAMES, Splits, check_classes
from transferkit.errors import TransferkitError
from transferkit.network import reachable

DEFAULT_SPLITS = {"train": "train[:70%]", "val": "train[70%:85%]", "test": "train[85%:]"}


def _builder(name, data_dir):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # tfds raises several types for an unknown name
        raise TransferkitError(f"tfds has no dataset '{name}': {str(err).splitlines()[0][:200]}") from err


def _prepare(builder, data_dir):
    if builder.data_path.joinpath("dataset_info.json").exists():
        return
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    if not reachable("storage.googleapis.com"):
        raise TransferkitError(
            f"tfds dataset '{builder.name}' is not prepared in {where} and the network is unreachable: prepare it "
            f"on a connected machine (python data_scripts/prepare_offline.py RECIPE --out DIR), copy DIR here and "
            f"pass --data-dir DIR (or set TFDS_DATA_DIR); datasets with manual downloads read "
            f"{where}/downloads/manual"
        )
    builder.download_and_prepare()


def _features(builder):
    import tensorflow_datasets as tfds

    features = builder.info.features
    image = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
    label = next((k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    if image is None or label is None:
        raise TransferkitError(f"tfds dataset '{builder.name}' has no image and class-label features")
    return image, label, tuple(features[label].names)


def _per_class(dataset, num_classes, counts):
    """Cut the first ``counts`` examples of each class, in file order, into consecutive splits."""
    splits = {}
    start = 0
    for name, count in zip(SPLIT_NAMES, counts):
        parts = [dataset.filter(lambda x, y, c=c: tf.equal(y, c)).skip(start).take(count) for c in range(num_classes)]
        combined = parts[0]
        for part in parts[1:]:
            combined = combined.concatenate(part)
        splits[name] = combined
        start += count
    return splits


@DATA_SOURCES.register("tfds")
def tfds_source(config, seed):
    """A TensorFlow Datasets image-classification dataset (``data.name``), its image and label read from its info.

    ``data.splits`` maps train/val/test to tfds split strings (``train[:80%]``); ``data.per_class: [a, b, c]``
    takes the first a, b and c images of each class from the ``train`` split instead (the book's cats-vs-dogs
    subset is ``[1000, 500, 500]``).

    Example:
        >>> splits = tfds_source(DataConfig(source="tfds", name="tf_flowers"), seed=0)
    """
    if not config.name:
        raise TransferkitError("data.source 'tfds' needs data.name, e.g. cats_vs_dogs")
    builder = _builder(config.name, config.data_dir)
    _prepare(builder, config.data_dir)
    image_key, label_key, class_names = _features(builder)

    def supervised(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

    if config.per_class:
        if len(config.per_class) != 3:
            raise TransferkitError("data.per_class takes three numbers: train, val and test images per class")
        datasets = _per_class(supervised(config.splits.get("source", "train")), len(class_names), config.per_class)
        counts = {name: n * len(class_names) for name, n in zip(SPLIT_NAMES, config.per_class)}
    else:
        split_strings = {**DEFAULT_SPLITS, **config.splits}
        datasets = {name: supervised(split_strings[name]) for name in SPLIT_NAMES}
        counts = {name: builder.info.splits[split_strings[name]].num_examples for name in SPLIT_NAMES}
    check_classes(counts, class_names, 0)
    fingerprint = f"tfds:{builder.name}:{builder.info.version}:{sorted(config.splits.items())}:{config.per_class}"
    return Splits(datasets, counts, class_names, fingerprint)
