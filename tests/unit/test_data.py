import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from transferkit.data.folder import split_files
from transferkit.data.pipeline import batches, resize
from transferkit.data.sources import from_arrays, load_data
from transferkit.errors import TransferkitError
from transferkit.recipes import DataConfig


def _write_folder(root, classes, per_class, size=(20, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i:03d}.png")


def test_sample_source_gives_the_embedded_sample():
    splits = load_data(DataConfig(source="sample"))
    assert splits.counts == {"train": 1000, "val": 300, "test": 300}
    image, label = next(iter(splits.datasets["train"]))
    assert image.dtype == tf.uint8 and image.shape == (28, 28, 3) and label.dtype == tf.int32


def test_arrays_in_float_and_gray_become_rgb_uint8(stripes):
    x, y = stripes["train"]
    gray = x[..., 0].astype("float32") / 255.0
    splits = from_arrays({"train": (gray, y), "val": stripes["val"], "test": stripes["test"]}, ["h", "v"])
    image, _ = next(iter(splits.datasets["train"]))
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8
    np.testing.assert_allclose(image.numpy()[..., 0], x[0, ..., 0], atol=1)


def test_arrays_with_one_class_or_mismatched_lengths_are_refused(stripes):
    x, y = stripes["train"]
    with pytest.raises(TransferkitError, match="at least 2 classes"):
        from_arrays({"train": (x, y * 0), "val": (x, y * 0), "test": (x, y * 0)}, ["only"])
    with pytest.raises(TransferkitError, match="labels"):
        from_arrays({"train": (x, y[:-1]), "val": (x, y), "test": (x, y)}, ["h", "v"])


def test_folder_split_by_fractions_is_deterministic_disjoint_and_stratified(tmp_path):
    _write_folder(tmp_path, ["cat", "dog"], 20)
    config = DataConfig(source="folder", path=str(tmp_path), val_fraction=0.2, test_fraction=0.2)
    first, again, other = load_data(config, seed=1), load_data(config, seed=1), load_data(config, seed=2)
    assert first.counts == {"train": 24, "val": 8, "test": 8}
    assert first.class_names == ("cat", "dog")
    assert first.fingerprint == again.fingerprint != other.fingerprint
    by_class = {c: sorted(str(p) for p in (tmp_path / c).iterdir()) for c in ("cat", "dog")}
    parts = split_files(by_class, 0.2, 0.2, seed=1)
    seen = [f for split in parts.values() for f, _ in split]
    assert len(seen) == len(set(seen)) == 40
    assert sorted(label for _, label in parts["test"]) == [0] * 4 + [1] * 4
    assert parts == split_files(by_class, 0.2, 0.2, seed=1) != split_files(by_class, 0.2, 0.2, seed=2)


def test_folder_with_train_val_test_subfolders(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        _write_folder(tmp_path / split, ["a", "b", "c"], n)
    splits = load_data(DataConfig(source="folder", path=str(tmp_path)))
    assert splits.counts == {"train": 18, "val": 6, "test": 9}
    image, label = next(iter(splits.datasets["test"]))
    assert image.shape == (20, 30, 3) and int(label) == 0


@pytest.mark.parametrize("layout, message", [
    ("missing", "not found"),
    ("empty", "no class subfolders"),
    ("one_class", "at least 2 classes"),
    ("empty_class", "without images"),
])
def test_bad_folders_get_one_clear_error(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "empty":
        root.mkdir()
    elif layout == "one_class":
        _write_folder(root, ["cat"], 10)
    elif layout == "empty_class":
        _write_folder(root, ["cat"], 10)
        (root / "dog").mkdir()
    with pytest.raises(TransferkitError, match=message):
        load_data(DataConfig(source="folder", path=str(root)))


def test_unknown_source_suggests_the_closest():
    with pytest.raises(TransferkitError, match="did you mean 'folder'"):
        load_data(DataConfig(source="foldr"))


@pytest.mark.parametrize("mode, expected_center", [("squash", 0.0), ("crop", 0.0), ("pad", 0.0)])
def test_resize_modes_give_square_float_images(mode, expected_center):
    image = tf.zeros((20, 40, 3), tf.uint8)
    out = resize(image, 16, mode)
    assert out.shape == (16, 16, 3) and out.dtype == tf.float32
    assert float(out[8, 8, 0]) == expected_center


def test_crop_keeps_the_centre_and_pad_keeps_everything():
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, :10] = 255  # a bright left third
    cropped = resize(tf.constant(image), 10, "crop").numpy()
    padded = resize(tf.constant(image), 30, "pad").numpy()
    assert cropped.max() == 0  # the centre square has none of the bright third
    assert padded[15, 2, 0] > 200 and padded[2, 2, 0] == 0  # bright third kept, padding above it


def test_batches_shuffle_deterministically_and_keep_eval_order(stripes):
    splits = from_arrays(stripes, ["h", "v"])
    labels = lambda ds: np.concatenate([y.numpy() for _, y in ds])  # noqa: E731
    a = labels(batches(splits.datasets["train"], 32, 8, shuffle_seed=3))
    b = labels(batches(splits.datasets["train"], 32, 8, shuffle_seed=3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(labels(batches(splits.datasets["test"], 32, 8)), stripes["test"][1])
