"""The embedded Fashion-MNIST sample: the shipped file, its loader, and the builder that makes it."""
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import embedded
from transferkit.errors import TransferkitError

BUILDER_PATH = Path(__file__).resolve().parents[2] / "data_scripts" / "build_sample.py"
_spec = importlib.util.spec_from_file_location("build_sample", BUILDER_PATH)
build_sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_sample)

SPLITS = ("train", "val", "test")
DEFAULT_PER_CLASS = dict(zip(SPLITS, (100, 30, 30)))
needs_source = pytest.mark.skipif(
    not build_sample.DEFAULT_SOURCE.is_dir(), reason="needs: apt-get install dataset-fashion-mnist"
)


@pytest.fixture(scope="module")
def sample():
    return embedded.load_sample()


def run_builder(out, *args):
    build_sample.main(["--out", str(out), *args])
    with np.load(out, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def test_shipped_sample_loads_with_rgb_uint8_images_and_int64_labels(sample):
    assert sample.class_names == build_sample.CLASS_NAMES
    for name in SPLITS:
        images, labels = getattr(sample, name)
        n = 10 * DEFAULT_PER_CLASS[name]
        assert images.shape == (n, 28, 28, 3) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert (images[..., 0] == images[..., 1]).all() and (images[..., 0] == images[..., 2]).all()


def test_every_class_has_the_configured_count_in_every_split(sample):
    for name in SPLITS:
        _, labels = getattr(sample, name)
        assert np.bincount(labels, minlength=10).tolist() == [DEFAULT_PER_CLASS[name]] * 10


def test_images_are_not_blank_and_no_image_is_in_two_splits(sample):
    hashes = {}
    for name in SPLITS:
        images, _ = getattr(sample, name)
        assert (images.reshape(len(images), -1).std(axis=1) > 0).all()
        hashes[name] = {hashlib.sha256(image.tobytes()).hexdigest() for image in images}
        assert len(hashes[name]) == len(images)
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]


def test_missing_sample_file_raises_a_one_line_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded, "SAMPLE_PATH", tmp_path / "absent.npz")
    with pytest.raises(TransferkitError, match="python data_scripts/build_sample.py") as info:
        embedded.load_sample()
    assert "\n" not in str(info.value)


@needs_source
def test_builder_is_deterministic_matches_the_shipped_file_and_depends_on_the_seed(tmp_path):
    first = run_builder(tmp_path / "a.npz", "--seed", "0")
    second = run_builder(tmp_path / "b.npz", "--seed", "0")
    with np.load(embedded.SAMPLE_PATH, allow_pickle=False) as npz:
        shipped = {name: npz[name] for name in npz.files}
    for name, array in first.items():
        assert array.tobytes() == second[name].tobytes(), name
        assert array.dtype == shipped[name].dtype and array.tobytes() == shipped[name].tobytes(), name
    other = run_builder(tmp_path / "c.npz", "--seed", "1")
    assert not np.array_equal(other["x_train"], first["x_train"])
    assert not np.array_equal(other["x_test"], first["x_test"])


@needs_source
def test_builder_per_class_option_sets_the_counts(tmp_path):
    arrays = run_builder(tmp_path / "tiny.npz", "--per-class", "5", "2", "2")
    for name, n in zip(SPLITS, (5, 2, 2)):
        assert arrays[f"x_{name}"].shape == (10 * n, 28, 28) and arrays[f"x_{name}"].dtype == np.uint8
        assert np.bincount(arrays[f"y_{name}"], minlength=10).tolist() == [n] * 10


def test_builder_without_the_source_says_how_to_install_it(tmp_path):
    with pytest.raises(SystemExit, match="apt-get install dataset-fashion-mnist") as info:
        build_sample.main(["--source", str(tmp_path), "--out", str(tmp_path / "x.npz")])
    assert "\n" not in str(info.value.code)
