from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from transferkit.data.folder import split_files
from transferkit.data.pipeline import batches, epoch_batches, resize
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


def test_training_batches_shuffle_by_seed_and_epoch_and_eval_keeps_its_order(stripes):
    splits = from_arrays(stripes, ["h", "v"])
    labels = lambda ds: np.concatenate([y.numpy() for _, y in ds])  # noqa: E731

    def epoch(seed, k):
        data = epoch_batches(splits.datasets["train"], splits.counts["train"], 32, 8, seed=seed)
        return labels(data.epochs(k, k + 1))

    np.testing.assert_array_equal(epoch(3, 2), epoch(3, 2))
    assert not np.array_equal(epoch(3, 2), epoch(3, 1)) and not np.array_equal(epoch(3, 2), epoch(4, 2))
    assert sorted(epoch(3, 2)) == sorted(stripes["train"][1])  # every image once per epoch
    np.testing.assert_array_equal(labels(batches(splits.datasets["test"], 32, 8)), stripes["test"][1])


# --- real folders: every format decodes to RGB uint8, unreadable files are skipped or refused -------------------

def _smooth(size=(24, 32), seed=0):
    """A smooth RGB image (JPEG keeps it within a few levels)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (3, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size[::-1], Image.BILINEAR))


def _flat(size=(24, 32)):
    """Four flat colour blocks: fits a palette exactly."""
    image = np.zeros((*size, 3), np.uint8)
    image[:12, :16], image[:12, 16:], image[12:, :16], image[12:, 16:] = (200, 30, 30), (30, 200, 30), (30, 30, 200), 90
    return image


def _write_formats(folder):
    """Every kind of file a real folder holds; returns {name: expected RGB, or a tolerance and expected, or None}."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    smooth, flat = _smooth(), _flat()
    gray16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85)
    expected = {}
    Image.fromarray(flat).save(folder / "rgb.png")
    expected["rgb.png"] = (0, flat)
    (folder / "rgb16.png").write_bytes(tf.io.encode_png(tf.constant(flat.astype(np.uint16) * 257)).numpy())
    expected["rgb16.png"] = (0, flat)
    Image.fromarray(gray16).save(folder / "gray16.png")
    expected["gray16.png"] = (1, np.repeat(np.round(gray16 / 257.0)[..., None], 3, axis=-1))
    Image.fromarray(np.dstack([flat, np.full(flat.shape[:2], 60, np.uint8)])).save(folder / "rgba.png")
    expected["rgba.png"] = (0, flat)
    Image.fromarray(flat[..., 0]).save(folder / "gray.png")
    expected["gray.png"] = (0, np.repeat(flat[..., :1], 3, axis=-1))
    Image.fromarray(smooth).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    expected["cmyk.jpg"] = (8, smooth)
    Image.fromarray(smooth).save(folder / "photo.jpg", quality=95)
    expected["photo.jpg"] = (8, smooth)
    frames = [Image.fromarray(flat), Image.fromarray(255 - flat)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    expected["anim.gif"] = (0, flat)  # the first frame
    Image.fromarray(flat).save(folder / "rgb.bmp")
    expected["rgb.bmp"] = (0, flat)
    Image.fromarray(flat).convert("P", palette=Image.ADAPTIVE, colors=8).save(folder / "palette.bmp")  # TF: gray
    expected["palette.bmp"] = (0, flat)
    Image.fromarray(flat).save(folder / "scan.tif")
    expected["scan.tif"] = (0, flat)
    Image.fromarray(flat).save(folder / "web.webp", lossless=True)
    expected["web.webp"] = (0, flat)
    jpeg = (folder / "photo.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) * 9 // 10])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_bytes(b"shopping list: cat food")
    png = (folder / "rgb.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    shutil.copy(folder / "rgb.png", folder / "copy.png")
    expected["copy.png"] = (0, flat)
    expected.update({name: None for name in ("truncated.jpg", "zero.jpg", "notes.jpg", "truncated.png")})
    return expected


def test_every_readable_format_decodes_to_rgb_uint8_and_the_rest_get_a_reason(tmp_path):
    from transferkit.data.images import check_images, decode_file

    expected = _write_formats(tmp_path)
    checks = {Path(c.path).name: c for c in check_images(sorted(str(p) for p in tmp_path.iterdir()))}
    assert {name for name, c in checks.items() if c.error} == {n for n, e in expected.items() if e is None}
    assert checks["zero.jpg"].error == "empty file (0 bytes)"
    assert checks["notes.jpg"].error.startswith("not an image")
    assert "truncated" in checks["truncated.jpg"].error and "truncated" in checks["truncated.png"].error
    assert {name for name, c in checks.items() if c.via_pil} == {"palette.bmp", "scan.tif", "web.webp"}
    for name, (tolerance, want) in ((n, e) for n, e in expected.items() if e is not None):
        image = decode_file(tf.constant(checks[name].path), tf.constant(checks[name].via_pil))
        assert image.dtype == tf.uint8 and image.shape == (24, 32, 3), name
        error = np.abs(image.numpy().astype(int) - want.astype(int))
        assert error.mean() <= tolerance / 2 and error.max() <= max(tolerance * 4, 1), name


def test_a_folder_with_bad_files_trains_on_the_rest_after_one_warning(tmp_path, capsys):
    for split in ("train", "val", "test"):
        _write_formats(tmp_path / split / "blocks")
        _write_folder(tmp_path / split, ["noise"], 3, size=(24, 32))
    splits = load_data(DataConfig(source="folder", path=str(tmp_path)))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert lines == [f"warning: skipped 12 unreadable images in train (4), val (4), test (4) of {tmp_path} "
                     f"(see transferkit data check {tmp_path})"]
    assert splits.counts == {"train": 16, "val": 16, "test": 16}
    assert splits.class_counts["train"] == (13, 3)
    images = [x for x, _ in batches(splits.datasets["train"], 16, 5)]  # the whole split decodes, no error
    assert sum(len(x) for x in images) == 16


def test_strict_refuses_bad_files_before_training(tmp_path):
    _write_folder(tmp_path, ["a", "b"], 6)
    (tmp_path / "b" / "zero.jpg").write_bytes(b"")
    with pytest.raises(TransferkitError, match=r"1 unreadable image in .* \(first: .*zero\.jpg: empty file") as err:
        load_data(DataConfig(source="folder", path=str(tmp_path), strict=True))
    assert "transferkit data check" in str(err.value) and "\n" not in str(err.value)


# --- class weights ------------------------------------------------------------------------------------------

def test_class_weights_auto_mapping_and_unknown_names():
    from transferkit.data.balance import class_weights

    assert class_weights("none", ("a", "b")) is None
    assert class_weights("auto", ("a", "b", "c"), (60, 30, 10)) == {0: 0.5556, 1: 1.1111, 2: 3.3333}
    assert class_weights({"c": 4, 0: 2.5}, ("a", "b", "c")) == {0: 2.5, 1: 1.0, 2: 4.0}
    with pytest.raises(TransferkitError, match="unknown class 'dgo' .*did you mean 'dog'"):
        class_weights({"dgo": 2}, ("cat", "dog"))


def test_class_weight_auto_makes_fit_care_about_the_rare_class():
    """Noise features, 90% class 0: unweighted, the model predicts 0 always; weighted, it predicts 1 half the time."""
    import keras

    from transferkit.recipes import load_recipe
    from transferkit.strategies.common import Context
    from transferkit.training.stage import train_stage

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 8)).astype("float32"), (np.arange(400) % 10 == 0).astype("int32")
    images = np.zeros((400, 4, 4, 3), np.uint8)
    splits = from_arrays({"train": (images, y), "val": (images[:20], y[:20]), "test": (images[:20], y[:20])})
    predicted_rare = {}
    for setting in ("none", "auto"):
        keras.utils.set_random_seed(0)
        ctx = Context(load_recipe("demo_hed", [f"data.class_weight={setting}"]), splits, verbose=0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
        stage = ctx.recipe.feature_extraction.stage("head", epochs=10, learning_rate=0.1)
        train_stage(ctx, model, stage, (x, y), None, batch_size=400)
        predicted_rare[setting] = float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == 1))
    assert ctx.class_weight == {0: 0.5556, 1: 5.0}
    assert predicted_rare["none"] < 0.05 and predicted_rare["auto"] > 0.25


# --- data_scripts/make_cats_dogs_small.py on a fake Microsoft download ---------------------------------------------

def _fake_pet_images(root):
    """PetImages/Cat and PetImages/Dog with 7 JPEGs each, numbered out of order, plus the kinds of junk the real
    download holds: an empty file, a truncated JPEG, a text file named .jpg, Thumbs.db."""
    for name in ("Cat", "Dog"):
        folder = root / "PetImages" / name
        folder.mkdir(parents=True)
        for number in (0, 1, 2, 3, 4, 5, 10):
            Image.fromarray(_smooth(seed=number)).save(folder / f"{number}.jpg")
        (folder / "Thumbs.db").write_bytes(b"\0" * 64)
    (root / "PetImages" / "Cat" / "1.jpg").write_bytes(b"")
    jpeg = (root / "PetImages" / "Dog" / "2.jpg").read_bytes()
    (root / "PetImages" / "Dog" / "2.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "PetImages" / "Dog" / "4.jpg").write_bytes(b"<html>404</html>")
    return root / "PetImages"


def test_make_cats_dogs_small_skips_corrupt_files_from_a_folder_or_the_zip(tmp_path, capsys):
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location(
        "make_cats_dogs_small", Path(__file__).resolve().parents[2] / "data_scripts" / "make_cats_dogs_small.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    pets = _fake_pet_images(tmp_path / "download")
    with zipfile.ZipFile(tmp_path / "kagglecatsanddogs_5340.zip", "w") as archive:
        for path in pets.rglob("*"):
            archive.write(path, path.relative_to(pets.parent).as_posix())
    for source, out in ((pets, tmp_path / "from_folder"), (tmp_path / "kagglecatsanddogs_5340.zip", tmp_path / "zip")):
        make.main([str(source), "--out", str(out), "--per-class", "3", "1", "1"])
        assert sorted(p.name for p in (out / "train" / "cats").iterdir()) == ["cat.0.jpg", "cat.2.jpg", "cat.3.jpg"]
        assert [p.name for p in (out / "test" / "cats").iterdir()] == ["cat.5.jpg"]
        assert sorted(p.name for p in (out / "train" / "dogs").iterdir()) == ["dog.0.jpg", "dog.1.jpg", "dog.3.jpg"]
        assert [p.name for p in (out / "val" / "dogs").iterdir()] == ["dog.5.jpg"]
        assert [p.name for p in (out / "test" / "dogs").iterdir()] == ["dog.10.jpg"]
        assert (out / "test" / "dogs" / "dog.10.jpg").read_bytes() == (pets / "Dog" / "10.jpg").read_bytes()
        err = capsys.readouterr().err
        assert "skipped cat 1: empty file" in err and "skipped dog 2: corrupt or truncated" in err
        assert "skipped dog 4: not an image" in err
    with pytest.raises(SystemExit, match="only 6 good cats images, 7 wanted"):
        make.main([str(pets), "--out", str(tmp_path / "more"), "--per-class", "5", "1", "1"])


def test_sample_per_class_keeps_the_first_images_of_each_class():
    full = load_data(DataConfig(source="sample"))
    small = load_data(DataConfig(source="sample", per_class=[3, 2, 1]))
    assert small.counts == {"train": 30, "val": 20, "test": 10}
    assert small.class_counts["train"] == (3,) * 10
    first_train = [int(y) for _, y in full.datasets["train"]]
    kept = [int(y) for _, y in small.datasets["train"]]
    assert kept == [y for i, y in enumerate(first_train) if first_train[:i].count(y) < 3][:30]
    with pytest.raises(TransferkitError, match="per_class asks for 31"):
        load_data(DataConfig(source="sample", per_class=[1, 31, 1]))


def test_folders_with_different_classes_across_splits_are_refused(tmp_path):
    _write_folder(tmp_path / "train", ["cat", "dog"], 3)
    _write_folder(tmp_path / "val", ["cat", "dog"], 2)
    _write_folder(tmp_path / "test", ["cat", "fox"], 2)
    with pytest.raises(TransferkitError, match=r"test has classes \['cat', 'fox'\], train has \['cat', 'dog'\]"):
        load_data(DataConfig(source="folder", path=str(tmp_path)))


def test_a_class_whose_training_files_are_all_unreadable_is_refused(tmp_path):
    _write_folder(tmp_path, ["good"], 20)
    (tmp_path / "broken").mkdir()
    for i in range(5):
        (tmp_path / "broken" / f"{i}.jpg").write_text("not an image")
    with pytest.raises(TransferkitError, match="no training images of class 'broken'"):
        load_data(DataConfig(source="folder", path=str(tmp_path)))


def test_the_keras_internal_that_reseeding_relies_on_is_there():
    import keras

    from transferkit.data.pipeline import seed_generators

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.RandomFlip()])
    assert len(seed_generators(model)) == 2, (
        "keras.layers.Layer._seed_generators moved: epoch-exact resume (transferkit.data.pipeline) must follow it")


def test_training_batches_work_with_a_global_seed_of_0(stripes):
    import keras

    keras.utils.set_random_seed(0)  # seed: 0 in a recipe; TensorFlow's seed check once broke on it
    splits = from_arrays(stripes, ["h", "v"])
    data = epoch_batches(splits.datasets["train"], splits.counts["train"], 32, 8, seed=0)
    assert sum(len(y) for _, y in data.epochs(0, 2)) == 2 * splits.counts["train"]
