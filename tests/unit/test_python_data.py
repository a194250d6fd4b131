"""Data given in Python (arrays, lists, tf.data datasets) in the forms users have it, and one-line refusals."""
import numpy as np
import pytest
import tensorflow as tf

import transferkit
from transferkit.data.datasets import from_datasets
from transferkit.data.sources import Splits, from_arrays
from transferkit.errors import TransferkitError


def _elements(splits, split="train"):
    return [(image.numpy(), int(label)) for image, label in splits.datasets[split]]


def _same_data(a, b):
    for split in ("train", "val", "test"):
        ours, theirs = _elements(a, split), _elements(b, split)
        assert len(ours) == len(theirs)
        for (x, y), (x2, y2) in zip(ours, theirs):
            assert y == y2 and x.shape == x2.shape and np.abs(x.astype(int) - x2).max() <= 1


def _with(stripes, **splits):
    return {**stripes, **splits}


def test_string_labels_one_hot_rows_and_whole_floats_mean_the_same_classes(stripes):
    reference = from_arrays(stripes, ["h", "v"])
    names = {split: (x, np.array(["h", "v"])[y]) for split, (x, y) in stripes.items()}
    assert from_arrays(names).class_names == ("h", "v")  # without class_names: the sorted distinct names
    _same_data(from_arrays(names, ["h", "v"]), reference)
    _same_data(from_arrays({s: (x, np.eye(2)[y]) for s, (x, y) in stripes.items()}, ["h", "v"]), reference)
    _same_data(from_arrays({s: (x, y.astype(float)) for s, (x, y) in stripes.items()}, ["h", "v"]), reference)


@pytest.mark.parametrize("labels, message", [
    (lambda y: y - 1, "from 0 up"),
    (lambda y: y + 0.5, "whole numbers"),
    (lambda y: np.array(["h", "x"])[y], "class_names lacks: x"),
    (lambda y: np.stack([y, y], 1) * 3, "one class index per image"),
])
def test_bad_labels_get_one_line(stripes, labels, message):
    x, y = stripes["train"]
    with pytest.raises(TransferkitError, match=message):
        from_arrays(_with(stripes, train=(x, labels(y))), ["h", "v"])


@pytest.mark.parametrize("names, message", [
    ("hv", "not one string"), (["h", "h"], "twice"), (["h", "v", "d"], "no training images of class 'd'")])
def test_bad_class_names_get_one_line(stripes, names, message):
    with pytest.raises(TransferkitError, match=message):
        from_arrays(stripes, names)


def test_uint16_images_are_scaled_and_preprocessed_ones_refused(stripes):
    x, y = stripes["train"]
    _same_data(from_arrays(_with(stripes, train=(x.astype(np.uint16) * 257, y)), ["h", "v"]),
               from_arrays(stripes, ["h", "v"]))
    centred = x.astype(np.float32) / 127.5 - 1  # what preprocess_input would give
    with pytest.raises(TransferkitError, match="train: float images must be on a 0-1 or 0-255 scale"):
        from_arrays(_with(stripes, train=(centred, y)), ["h", "v"])
    broken = x.astype(np.float32)
    broken[0, 0, 0, 0] = np.nan
    with pytest.raises(TransferkitError, match="NaN"):
        from_arrays(_with(stripes, train=(broken, y)), ["h", "v"])


def test_a_list_of_images_of_different_sizes_trains_after_resizing(stripes):
    x, y = stripes["train"]
    images = [image[: 20 + i % 13] for i, image in enumerate(x)]
    splits = from_arrays(_with(stripes, train=(images, y)), ["h", "v"])
    assert [image.shape for image, _ in _elements(splits)[:3]] == [(20, 32, 3), (21, 32, 3), (22, 32, 3)]
    assert splits.counts["train"] == len(y) and splits.class_counts["train"] == (48, 48)
    # a known length: Keras' validation pass over a dataset of unknown length warns it "ran out of data"
    assert int(splits.datasets["train"].cardinality()) == len(y)


def test_validation_is_val_and_unknown_splits_are_refused(stripes):
    renamed = {"train": stripes["train"], "validation": stripes["val"], "test": stripes["test"]}
    assert from_arrays(renamed, ["h", "v"]).counts["val"] == len(stripes["val"][1])
    with pytest.raises(TransferkitError, match="a split 'foo'"):
        from_arrays({**stripes, "foo": stripes["test"]}, ["h", "v"])


def test_batched_float_one_hot_datasets_give_the_same_splits_as_arrays(stripes):
    as_floats = {split: tf.data.Dataset.from_tensor_slices((x.astype(np.float32) / 255, np.eye(2)[y])).batch(10)
                 for split, (x, y) in stripes.items()}
    splits = from_datasets(as_floats, ["h", "v"])
    _same_data(splits, from_arrays(stripes, ["h", "v"]))
    assert splits.counts == {split: len(y) for split, (_, y) in stripes.items()}
    assert splits.class_counts["test"] == (32, 32)
    shuffled = {**as_floats, "train": as_floats["train"].unbatch().shuffle(200, seed=1)}
    assert from_datasets(shuffled, ["h", "v"]).fingerprint == splits.fingerprint  # same data, other order


def test_tfds_style_dicts_and_string_labels(stripes):
    dicts = {split: tf.data.Dataset.from_tensor_slices({"image": x[..., 0], "label": np.array(["h", "v"])[y]})
             for split, (x, y) in stripes.items()}
    splits = from_datasets(dicts)
    assert splits.class_names == ("h", "v")
    assert [label for _, label in _elements(splits)[:4]] == stripes["train"][1][:4].tolist()


def test_bad_datasets_get_one_line(stripes):
    good = {split: tf.data.Dataset.from_tensor_slices((x, y)) for split, (x, y) in stripes.items()}
    with pytest.raises(TransferkitError, match="label 2 has no class name"):
        from_datasets({**good, "val": good["val"].map(lambda x, y: (x, y + 1))}, ["h", "v"])
    with pytest.raises(TransferkitError, match="missing: test"):
        from_datasets({"train": good["train"], "val": good["val"]})
    with pytest.raises(TransferkitError, match="must yield unbatched"):
        Splits({split: ds.batch(4) for split, ds in good.items()}, {"train": 1, "val": 1, "test": 1}, ("h", "v"), "x")


def test_run_trains_on_a_dict_of_datasets(stripes, tmp_path):
    data = {split: tf.data.Dataset.from_tensor_slices((x, y)).batch(16) for split, (x, y) in stripes.items()}
    result = transferkit.run("demo_hed", strategy="feature_extraction", data=data, class_names=["h", "v"],
                             out=tmp_path, verbose=0,
                             overrides=["image_size=32", "base_blocks=2", "data.per_class=null", "head.units=16"])
    assert result.metrics["num_examples"]["train"] == 96
    assert result.metrics["test_accuracy"] >= 0.8


def test_each_split_converts_its_own_label_form(stripes):
    mixed = {"train": tf.data.Dataset.from_tensor_slices(stripes["train"]),
             "val": tf.data.Dataset.from_tensor_slices((stripes["val"][0], np.eye(2)[stripes["val"][1]])),
             "test": tf.data.Dataset.from_tensor_slices(stripes["test"])}
    _same_data(from_datasets(mixed, ["h", "v"]), from_arrays(stripes, ["h", "v"]))


def test_image_dataset_from_directory_brings_its_own_class_names(tmp_path, stripes):
    import keras
    from PIL import Image

    for split, (images, labels) in stripes.items():
        for i, (image, label) in enumerate(zip(images[:8], labels[:8])):
            folder = tmp_path / split / ("horizontal", "vertical")[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    datasets = {split: keras.utils.image_dataset_from_directory(tmp_path / split, image_size=(32, 32), batch_size=4,
                                                                shuffle=False, verbose=False)
                for split in stripes}
    assert from_datasets(datasets).class_names == ("horizontal", "vertical")


def test_datasets_whose_class_names_differ_between_splits_are_refused(stripes):
    datasets = {}
    for split, (x, y) in stripes.items():
        datasets[split] = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        datasets[split].class_names = ["a", "b"] if split != "val" else ["a", "c"]
    with pytest.raises(TransferkitError, match="class_names differ between splits"):
        from_datasets(datasets)
