"""tfds data sets without the network: ``tfds.testing.mock_data`` over real metadata written to a temporary folder.

This tfds install ships no ``testing/metadata``, so each test writes the dataset's info (from its code) where
the mocked builder looks, which is what a prepared data set has: transferkit's "prepared" check then passes
and the mock yields random examples of the right features.
"""
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import transferkit
from transferkit.data.sources import load_data
from transferkit.errors import TransferkitError
from transferkit.recipes import DataConfig

tfds = pytest.importorskip("tensorflow_datasets")
SCRIPTS = Path(__file__).resolve().parents[2] / "data_scripts"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mocked(tmp_path):
    """``mocked(name, ..., num_examples=n)``: a context in which those tfds data sets are prepared, with mock data."""

    def mock(*names, num_examples):
        meta = tmp_path / "tfds-metadata"
        for name in names:
            builder = tfds.builder(name, data_dir=str(meta))
            builder.data_path.mkdir(parents=True, exist_ok=True)
            builder.info.write_to_directory(builder.data_path)
        return tfds.testing.mock_data(num_examples=num_examples, data_dir=str(meta))

    return mock


def test_cats_dogs_recipe_end_to_end_with_per_class_counts(mocked, tmp_path):
    with mocked("cats_vs_dogs", num_examples=40):
        result = transferkit.run("cats_dogs", strategy="feature_extraction", weights="hed-bsds500", image_size=32,
                                 epochs=1, out=tmp_path / "runs", verbose=0,
                                 overrides=["data.per_class=[4,2,2]", "head.units=8", "batch_size=8"])
        splits = load_data(result.recipe.data)
        records = list(tfds.builder("cats_vs_dogs").as_dataset(split="train", shuffle_files=False)
                       .as_numpy_iterator())
    assert result.metrics["num_examples"] == {"train": 8, "val": 4, "test": 4}
    assert result.metrics["class_names"] == ["cat", "dog"] and len(result.history) == 1
    assert (result.run_dir / "model.keras").is_file()
    assert splits.class_counts == {"train": (4, 4), "val": (2, 2), "test": (2, 2)}
    for label in (0, 1):  # each split holds the next images of each class, in file order
        in_order = [r["image"] for r in records if r["label"] == label][:8]
        got = [x.numpy() for split in ("train", "val", "test") for x, y in splits.datasets[split] if y == label]
        assert len(got) == 8 and all(np.array_equal(a, b) for a, b in zip(got, in_order))


def test_any_image_classification_dataset_its_label_not_called_label_and_gray_images(mocked):
    with mocked("smallnorb", num_examples=80):
        splits = load_data(DataConfig(source="tfds", name="smallnorb", per_class=[2, 1, 1]))
        image, label = next(iter(splits.datasets["train"]))
    assert splits.class_names == ("four-legged animals", "human figures", "airplanes", "trucks", "cars")
    assert splits.counts == {"train": 10, "val": 5, "test": 5}
    assert image.shape == (96, 96, 3) and image.dtype == tf.uint8 and label.dtype == tf.int32
    np.testing.assert_array_equal(image[..., 0], image[..., 2])  # gray made RGB


def test_too_few_images_for_per_class_is_one_clear_error(mocked):
    with mocked("cats_vs_dogs", num_examples=10), pytest.raises(TransferkitError, match="too few images"):
        load_data(DataConfig(source="tfds", name="cats_vs_dogs", per_class=[20, 5, 5]))


def test_unprepared_and_offline_fails_within_seconds_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "nothing"))
    started = time.time()
    with pytest.raises(TransferkitError) as err:
        load_data(DataConfig(source="tfds", name="cats_vs_dogs", per_class=[4, 2, 2]))
    assert time.time() - started < 30
    message = str(err.value)
    assert "\n" not in message and "--data-dir" in message and "TFDS_DATA_DIR" in message


def test_make_cats_dogs_small_from_tfds(mocked, tmp_path):
    make = _script("make_cats_dogs_small")
    with mocked("cats_vs_dogs", num_examples=30):
        make.main(["tfds", "--out", str(tmp_path / "small"), "--per-class", "3", "2", "2"])
    for split, count in (("train", 3), ("val", 2), ("test", 2)):
        for name in ("cats", "dogs"):
            assert len(list((tmp_path / "small" / split / name).iterdir())) == count
    assert load_data(DataConfig(source="folder", path=str(tmp_path / "small"))).counts == {
        "train": 6, "val": 4, "test": 4}


def test_prepare_offline_dry_run_lists_what_it_would_fetch(tmp_path, capsys):
    prepare = _script("prepare_offline")
    assert prepare.main(["cats_dogs", "demo", "--backbone", "resnet50", "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("from https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5") in out
    assert f"into {tmp_path}/keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in out
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in out
    assert "tfds     cats_vs_dogs" in out and f"into {tmp_path}/tensorflow_datasets" in out
    assert not any(tmp_path.iterdir())


def test_prepare_offline_knows_where_every_keras_cache_backbone_downloads_from():
    from transferkit.backbones import BACKBONES

    prepare = _script("prepare_offline")
    assert set(prepare.WEIGHT_URLS) == {name for name, spec in BACKBONES.items() if not spec.imagenet_source}
    for name in ("resnet152", "xception", "inception_resnet_v2"):
        item = prepare.plan(["demo"], Path("offline"), backbones=[name])[0]
        assert item[2] == prepare.WEIGHT_URLS[name] + BACKBONES[name].imagenet_file


def test_prepare_offline_fails_fast_offline_and_on_a_bad_recipe(tmp_path, capsys):
    prepare = _script("prepare_offline")
    started = time.time()
    assert prepare.main(["cats_dogs", "--out", str(tmp_path / "out")]) == 2
    assert time.time() - started < 30
    err = capsys.readouterr().err
    assert err.startswith("error: storage.googleapis.com is unreachable") and err.count("\n") == 1
    assert prepare.main(["cats_dgos"]) == 2
    assert "did you mean 'cats_dogs'" in capsys.readouterr().err
    assert prepare.main(["demo", "--dry-run"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
