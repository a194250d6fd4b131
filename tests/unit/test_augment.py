"""Each augmentation does what its name says, on synthetic images whose geometry is easy to measure."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from transferkit.data.augment import PCAColor, RandomCropResize, adapt, make_augmenter
from transferkit.data.pipeline import batches, epoch_batches
from transferkit.data.sources import from_arrays
from transferkit.recipes import AugmentConfig

SIZE, COPIES = 64, 48
OFF = dict(flip="none", rotation=0, width_shift=0, height_shift=0, shear=0, zoom=0, fill_mode="constant")


def _only(**keys):
    """An augmenter with just ``keys`` on (seeded)."""
    return make_augmenter(AugmentConfig(**{**OFF, **keys}), seed=3)


def _copies(image):
    return np.repeat(image[np.newaxis].astype("float32"), COPIES, axis=0)


def _shape(rows, cols):
    """A black image with a bright rectangle over ``rows`` x ``cols`` (slices)."""
    image = np.zeros((SIZE, SIZE, 3), "float32")
    image[rows, cols] = 255.0
    return image


def _bright(images):
    return np.asarray(images)[..., 0] > 127


def _centre_and_angle(mask):
    """Centre of mass (y, x) and principal-axis angle in degrees (0 = horizontal) of a boolean mask."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.stack([xs - cx, ys - cy]))
    values, vectors = np.linalg.eigh(cov)
    vx, vy = vectors[:, np.argmax(values)]
    angle = np.degrees(np.arctan2(vy, vx))
    return (cy, cx), (angle + 90) % 180 - 90


def test_nothing_on_means_no_augmenter():
    assert make_augmenter(AugmentConfig(**OFF)) is None


def test_flip_mirrors_the_image_or_leaves_it():
    image = _shape(slice(8, 56), slice(4, 20))  # a bar near the left edge
    out = np.asarray(_only(flip="horizontal")(_copies(image), training=True))
    mirrored = [np.array_equal(o, image[:, ::-1]) for o in out]
    unchanged = [np.array_equal(o, image) for o in out]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < COPIES


def test_rotation_turns_a_bar_by_up_to_the_angle():
    bar = _shape(slice(30, 34), slice(12, 52))  # horizontal, centred
    out = _only(rotation=40)(_copies(bar), training=True)
    angles = np.array([_centre_and_angle(mask)[1] for mask in _bright(out)])
    assert np.all(np.abs(angles) <= 42)
    assert np.abs(angles).max() > 25 and angles.min() < -10 < 10 < angles.max()


def test_width_shift_moves_the_centre_of_mass_sideways_only():
    square = _shape(slice(24, 40), slice(24, 40))
    out = _only(width_shift=0.2)(_copies(square), training=True)
    centres = np.array([_centre_and_angle(mask)[0] for mask in _bright(out)])
    dx, dy = centres[:, 1] - 31.5, centres[:, 0] - 31.5
    assert np.all(np.abs(dy) < 0.5) and np.all(np.abs(dx) <= 0.2 * SIZE + 1)
    assert dx.min() < -5 and dx.max() > 5


def test_zoom_changes_the_size_of_the_object_not_its_place():
    square = _shape(slice(24, 40), slice(24, 40))
    out = _only(zoom=0.3)(_copies(square), training=True)
    masks = _bright(out)
    sides = np.sqrt(masks.sum(axis=(1, 2))) / 16.0
    centres = np.array([_centre_and_angle(mask)[0] for mask in masks])
    assert np.all(np.abs(centres - 31.5) < 1.0)
    assert np.all((sides > 0.6) & (sides < 1.5)) and sides.min() < 0.9 and sides.max() > 1.1


def test_shear_slants_a_vertical_bar():
    bar = _shape(slice(12, 52), slice(30, 34))
    out = _only(shear=0.3)(_copies(bar), training=True)
    slants = []
    for mask in _bright(out):
        ys, xs = np.nonzero(mask)
        top, bottom = xs[ys < np.median(ys)].mean(), xs[ys >= np.median(ys)].mean()
        slants.append(bottom - top)
    slants = np.array(slants)
    assert np.abs(slants).max() > 3 and slants.min() < 0 < slants.max()


def test_random_crop_keeps_a_window_of_the_fraction_resized_back():
    ramp = np.tile(np.linspace(0, 252, SIZE, dtype="float32")[None, :, None], (SIZE, 1, 3))  # value ~ x
    out = np.asarray(_only(random_crop=0.5)(_copies(ramp), training=True))
    assert out.shape == (COPIES, SIZE, SIZE, 3)
    starts, spans = out[:, 0, 0, 0], out[:, 0, -1, 0] - out[:, 0, 0, 0]
    np.testing.assert_allclose(spans, 126, atol=1.5)  # half of the ramp, stretched over the whole width
    assert starts.min() >= 0 and starts.max() <= 126 and starts.std() > 15
    layer = RandomCropResize(0.5)
    np.testing.assert_array_equal(np.asarray(layer(_copies(ramp)[:2], training=False)), _copies(ramp)[:2])


def _colour_cloud(count=64, seed=0):
    """Images whose pixels vary along one colour direction around mid grey (covariance of rank one)."""
    rng = np.random.default_rng(seed)
    direction = np.array([1.0, 0.5, 0.25])
    t = rng.normal(0, 40, (count, 8, 8, 1))
    return np.clip(128 + t * direction, 0, 255).astype("float32"), direction / np.linalg.norm(direction), t


def test_pca_colour_adds_one_colour_shift_per_image_along_the_main_component():
    images, direction, t = _colour_cloud()
    layer = PCAColor(0.1, seed=1)
    layer.adapt(images)
    assert abs(abs(layer.eigenvectors[:, 0] @ direction) - 1) < 1e-3  # first component: the cloud's direction
    np.testing.assert_allclose(layer.eigenvalues[0], np.var(t) * 1.3125 / 255 ** 2, rtol=0.05)
    assert layer.eigenvalues[1] < 1e-4 * layer.eigenvalues[0]
    grey = np.full((COPIES, 8, 8, 3), 128.0, "float32")
    shift = np.asarray(layer(grey, training=True)) - grey
    per_image = shift[:, 0, 0]
    np.testing.assert_allclose(shift, np.broadcast_to(per_image[:, None, None], shift.shape), atol=1e-4)
    cosines = per_image @ direction / np.linalg.norm(per_image, axis=1)
    assert np.all(np.abs(cosines) > 0.999)
    expected = 0.1 * layer.eigenvalues[0] * 255  # std of alpha * lambda_1, on the 0-255 scale
    assert 0.6 * expected < np.std(per_image @ direction) < 1.5 * expected
    np.testing.assert_array_equal(np.asarray(layer(grey, training=False)), grey)


def test_pca_colour_is_serializable_and_refuses_to_run_unadapted():
    images, _, _ = _colour_cloud()
    layer = PCAColor(0.1, seed=1)
    with pytest.raises(ValueError, match="adapt"):
        layer(images, training=True)
    layer.adapt(images)
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, PCAColor) and again.stddev == 0.1
    np.testing.assert_allclose(again.eigenvectors, layer.eigenvectors)
    np.testing.assert_allclose(again.eigenvalues, layer.eigenvalues)
    crop = keras.layers.deserialize(keras.layers.serialize(RandomCropResize(0.875, seed=2)))
    assert crop.fraction == 0.875


def test_the_pipeline_adapts_pca_on_training_images_and_augments_training_batches_only(stripes):
    splits = from_arrays(stripes, ["h", "v"])
    augment = _only(pca_color=0.1, random_crop=0.8)
    train = epoch_batches(splits.datasets["train"], splits.counts["train"], 32, 16, seed=1, augment=augment)
    reference = PCAColor(0.1)
    adapt(keras.Sequential([reference]), stripes["train"][0])
    np.testing.assert_allclose(augment.layers[-1].eigenvalues, reference.eigenvalues, rtol=1e-4)
    batches_of = iter(train.epochs(0, 2))
    first, second = (np.concatenate([next(batches_of)[0] for _ in range(train.steps)]) for _ in range(2))
    assert not np.allclose(np.sort(first, axis=None), np.sort(second, axis=None))  # new crops and colours
    restarted = iter(train.epochs(1, 2))  # epoch 1 drawn afresh, as a resumed run draws it
    np.testing.assert_allclose(np.concatenate([next(restarted)[0] for _ in range(train.steps)]), second, atol=1e-4)
    test = batches(splits.datasets["test"], 32, 16)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in test]), stripes["test"][0].astype("float32"))


def test_augmentation_never_reaches_the_saved_model(tmp_path, stripes):
    import transferkit

    result = transferkit.run(
        "demo_hed", strategy="scratch", data=stripes, class_names=["h", "v"], out=tmp_path / "runs", epochs=1,
        overrides=["scratch.baseline=lenet5", "scratch.augment=true", "augment.pca_color=0.1",
                   "augment.random_crop=0.875", "batch_size=32", "image_size=32"], verbose=0)
    saved = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)

    def layers(model):
        for layer in model.layers:
            yield layer
            if isinstance(layer, keras.Model):
                yield from layers(layer)

    found = [layer for model in (result.model, saved) for layer in layers(model)]
    assert not {type(layer).__name__ for layer in found} & {"PCAColor", "RandomCropResize", "RandomFlip",
                                                           "RandomRotation", "RandomTranslation", "RandomShear",
                                                           "RandomZoom"}
    assert "augment" not in {layer.name for layer in found}
    images = tf.constant(stripes["test"][0][:4], tf.float32)
    np.testing.assert_allclose(saved(images, training=False), saved(images, training=False))


def test_preview_tiles_differ_from_the_originals_and_the_png_is_written(tmp_path):
    from transferkit.data.preview import augmented_samples, save_grid
    from transferkit.recipes import load_recipe

    recipe = load_recipe("demo_hed", ["augment.pca_color=0.1", "image_size=32"])
    originals, augmented = augmented_samples(recipe, count=3, copies=4)
    assert originals.shape == (3, 32, 32, 3) and augmented.shape == (4, 3, 32, 32, 3)
    assert originals.dtype == augmented.dtype == np.uint8
    for copy in augmented:
        assert all(np.abs(c.astype(int) - o.astype(int)).mean() > 2 for c, o in zip(copy, originals))
    path = save_grid(originals, augmented, tmp_path / "out" / "grid.png", "demo_hed")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_augmentation_runs_in_float32_under_a_mixed_policy():
    from transferkit.strategies.runtime import precision

    config = AugmentConfig(random_crop=0.875, pca_color=0.1)  # and the book's flip, rotation, shifts, shear, zoom
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    with precision("mixed_bfloat16"):
        augment = make_augmenter(config, seed=1)
        adapt(augment, images)
        out = augment(images, training=True)
    assert len(augment.layers) == 7 and out.dtype == tf.float32 and out.shape == images.shape
    assert not np.allclose(np.asarray(out), images)


def test_rand_augment_is_a_keras_layer_that_changes_images_and_resets_with_the_seed():
    from transferkit.data.pipeline import seed_generators

    config = AugmentConfig(flip="none", rotation=0, width_shift=0, height_shift=0, shear=0, zoom=0, rand_augment=0.5)
    augmenter = make_augmenter(config, seed=1)
    assert [type(layer).__name__ for layer in augmenter.layers] == ["RandAugment"]
    assert seed_generators(augmenter)  # reseeded per epoch like the other layers, so resumed runs match
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert np.abs(np.asarray(augmenter(images, training=True)) - images).mean() > 1
    assert make_augmenter(config.model_copy(update={"rand_augment": 0.0}), seed=1) is None
