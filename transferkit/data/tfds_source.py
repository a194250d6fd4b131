"""TensorFlow Datasets as a data source, with split slicing, per-class subsets and a fast offline failure.

Any tfds image-classification dataset works: the image and label features are read from its info (its
``supervised_keys`` when they name an image and a class label, e.g. smallnorb's ``label_category``), and
gray, gray + alpha, RGBA or 16-bit images are made RGB ``uint8``.
"""
import os

import tensorflow as tf

from transferkit.data.images import to_rgb_uint8
from transferkit.data.sources import DATA_SOURCES, SPLIT_NAMES, Splits, check_classes, label_counts
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
            f"pass --data-dir DIR/tensorflow_datasets (or set TFDS_DATA_DIR); datasets with manual downloads read "
            f"{where}/downloads/manual"
        )
    builder.download_and_prepare()


def image_label_features(info):
    """The names of the image and class-label features of a tfds ``DatasetInfo``, and the class names.

    ``supervised_keys`` win when they name an Image and a ClassLabel; otherwise the first of each.

    Example:
        >>> image_label_features(tfds.builder("smallnorb").info)[:2]
        ('image', 'label_category')
    """
    import tensorflow_datasets as tfds

    features = info.features
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    supervised = info.supervised_keys
    if (isinstance(supervised, tuple) and len(supervised) == 2 and supervised[0] in images
            and supervised[1] in labels):
        image, label = supervised
    elif images and labels:
        image, label = images[0], labels[0]
    else:
        raise TransferkitError(f"tfds dataset '{info.name}' has no image and class-label features")
    return image, label, tuple(features[label].names)


def _assign_splits(records, num_classes, per_class):
    """Tag each ``(encoded image, label)`` record with the split of ``per_class`` it falls in: the first
    ``a`` of each class go to train (0), the next ``b`` to val (1), the next ``c`` to test (2), the rest 3."""
    bounds = tf.constant([sum(per_class[:i + 1]) for i in range(3)], tf.int64)

    def tag(seen, record):
        _, label = record
        index = seen[label]
        split = tf.reduce_sum(tf.cast(index >= bounds, tf.int32))
        return seen + tf.one_hot(label, num_classes, dtype=tf.int64), (*record, split)

    return records.scan(tf.zeros([num_classes], tf.int64), tag)


def _per_class(builder, split, image_key, label_key, class_names, per_class):
    """The first ``per_class[i]`` images of each class of ``split``, for train, val and test, with their exact
    per-class counts. Labels are read first and only the images kept are decoded."""
    import tensorflow_datasets as tfds

    records = builder.as_dataset(split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()})
    records = records.map(lambda ex: (ex[image_key], ex[label_key]))
    tagged = _assign_splits(records, len(class_names), per_class)
    decode = builder.info.features[image_key].decode_example
    datasets, counts = {}, {}
    for index, (name, wanted) in enumerate(zip(SPLIT_NAMES, per_class)):
        chosen = tagged.filter(lambda x, y, s, i=index: tf.equal(s, i)).take(wanted * len(class_names))
        labels = [int(y) for y in chosen.map(lambda x, y, s: y)]
        counts[name] = label_counts(labels, len(class_names))
        short = [f"'{c}' {n}" for c, n in zip(class_names, counts[name]) if n < wanted]
        if short:
            raise TransferkitError(f"tfds '{builder.name}' {split} has too few images for data.per_class={per_class}: "
                                   f"{name} gets only {', '.join(short)} of {wanted}")
        datasets[name] = chosen.map(lambda x, y, s: (to_rgb_uint8(decode(x)), tf.cast(y, tf.int32)),
                                    num_parallel_calls=tf.data.AUTOTUNE)
    return datasets, counts


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
    image_key, label_key, class_names = image_label_features(builder.info)

    if config.per_class:
        if len(config.per_class) != 3:
            raise TransferkitError("data.per_class takes three numbers: train, val and test images per class")
        source = config.splits.get("source", "train")
        datasets, per_class = _per_class(builder, source, image_key, label_key, class_names, config.per_class)
        counts = {name: sum(per_class[name]) for name in SPLIT_NAMES}
    else:
        split_strings = {**DEFAULT_SPLITS, **config.splits}
        datasets = {
            name: builder.as_dataset(split=split_strings[name], shuffle_files=False).map(
                lambda ex: (to_rgb_uint8(ex[image_key]), tf.cast(ex[label_key], tf.int32)))
            for name in SPLIT_NAMES
        }
        counts = {name: builder.info.splits[split_strings[name]].num_examples for name in SPLIT_NAMES}
        per_class = None
    check_classes(counts, class_names, per_class and per_class["train"])
    fingerprint = f"tfds:{builder.name}:{builder.info.version}:{sorted(config.splits.items())}:{config.per_class}"
    return Splits(datasets, counts, class_names, fingerprint, per_class)
