"""Tests for transferkit.baselines: sizes, parameter counts, errors, saving, and a tiny training run."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from transferkit.baselines import BASELINES, BaselineSpec, create_baseline
from transferkit.errors import TransferkitError
from transferkit.layers import LocalResponseNormalization
from transferkit.strategies.runtime import precision


@pytest.mark.parametrize(
    "name, input_shape, num_classes, expected",
    [
        ("alexnet", (227, 227, 3), 1000, 62_378_344),
        ("vgg16", (224, 224, 3), 1000, 138_357_544),
        ("vgg11", (224, 224, 3), 1000, 132_863_336),
        ("lenet5", (28, 28, 1), 10, 61_706),
    ],
)
def test_parameter_counts_match_the_papers(name, input_shape, num_classes, expected):
    model = create_baseline(name, input_shape, num_classes)
    assert model.name == name
    assert model.count_params() == expected
    del model
    keras.backend.clear_session()


def test_registry_holds_every_baseline_with_consistent_specs():
    assert set(BASELINES) == {"alexnet", "vgg16", "vgg11", "small_convnet", "lenet5"}
    for name, spec in BASELINES.items():
        assert isinstance(spec, BaselineSpec)
        assert spec.name == name
        assert spec.min_size <= spec.default_size
        assert spec.description


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_builds_at_min_size_and_outputs_a_softmax(name):
    size = BASELINES[name].min_size
    model = create_baseline(name, (size, size, 3), num_classes=3)
    x = np.random.default_rng(0).uniform(0, 1, size=(2, size, size, 3)).astype("float32")
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (2, 3)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_min_size_is_the_smallest_input_that_builds(name):
    spec = BASELINES[name]
    below = spec.min_size - 1
    with pytest.raises(ValueError):
        spec.builder((below, below, 3), 2)  # Keras itself refuses: min_size is not arbitrary
    with pytest.raises(TransferkitError, match=rf"'{name}'.*at least {spec.min_size}x{spec.min_size}"):
        create_baseline(name, (below, below, 3), 2)
    with pytest.raises(TransferkitError, match=rf"at least {spec.min_size}x"):
        create_baseline(name, (spec.min_size, below, 3), 2)  # width alone too small


def test_rejects_input_shape_without_fixed_height_width_channels():
    with pytest.raises(TransferkitError, match="fixed input_shape"):
        create_baseline("lenet5", (None, None, 1), 10)
    with pytest.raises(TransferkitError, match="fixed input_shape"):
        create_baseline("lenet5", (32, 32), 10)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(TransferkitError, match="did you mean 'alexnet'"):
        create_baseline("alexnett", (227, 227, 3), 10)


def test_lrn_matches_the_alexnet_formula():
    x = np.random.default_rng(1).uniform(0, 1, size=(2, 3, 3, 7)).astype("float32")
    layer = LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-1, beta=0.75)
    got = keras.ops.convert_to_numpy(layer(x))
    expected = np.empty_like(x)
    for c in range(x.shape[-1]):
        window = x[..., max(0, c - 2): c + 3]
        expected[..., c] = x[..., c] / (2.0 + 1e-1 * (window**2).sum(axis=-1)) ** 0.75
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_lrn_computes_in_float32_under_mixed_precision(policy):
    # TensorFlow has no bfloat16 CPU kernel for LRN, and in float16 the squares of activations above 256 overflow
    x = np.random.default_rng(3).uniform(0, 400, size=(2, 3, 3, 8)).astype("float32")
    expected = keras.ops.convert_to_numpy(LocalResponseNormalization()(x))
    with precision(policy):
        layer = LocalResponseNormalization()
        got = layer(x)
    assert keras.backend.standardize_dtype(got.dtype) == layer.compute_dtype != "float32"  # the next layer's dtype
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.cast(got, "float32")), expected, rtol=1e-2)


def test_lrn_config_round_trips():
    layer = LocalResponseNormalization(depth_radius=3, bias=1.0, alpha=2e-4, beta=0.5, name="lrn")
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta, clone.name) == (3, 1.0, 2e-4, 0.5, "lrn")


def test_alexnet_saves_and_loads_in_safe_mode(tmp_path):
    size = BASELINES["alexnet"].min_size
    model = create_baseline("alexnet", (size, size, 3), num_classes=2)
    x = np.random.default_rng(2).uniform(0, 1, size=(2, size, size, 3)).astype("float32")
    path = tmp_path / "alexnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert sum(isinstance(layer, LocalResponseNormalization) for layer in loaded.layers) == 2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-6,
    )
    del model, loaded
    keras.backend.clear_session()


LOAD_CHILD = """
import json, sys
import numpy as np, keras
import transferkit.layers  # the only transferkit import a user needs to load a model
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
print(json.dumps({"probabilities": model.predict(np.load(sys.argv[2]), verbose=0).tolist(),
                  "modules": sorted(name for name in sys.modules if name.startswith("transferkit"))}))
"""


def test_alexnet_loads_in_a_fresh_process_that_imports_only_transferkit_layers(tmp_path):
    size = BASELINES["alexnet"].min_size
    model = create_baseline("alexnet", (size, size, 3), num_classes=2)
    x = np.random.default_rng(4).uniform(0, 1, size=(2, size, size, 3)).astype("float32")
    model.save(tmp_path / "alexnet.keras")
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(tmp_path / "alexnet.keras"), str(tmp_path / "x.npy")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["modules"] == ["transferkit", "transferkit.layers"]
    np.testing.assert_allclose(answer["probabilities"], keras.ops.convert_to_numpy(model(x, training=False)),
                               rtol=1e-5)
    del model
    keras.backend.clear_session()


def _bright_half_images(n, rng, size=16):
    """Label 0: bright left half; label 1: bright right half; both with Gaussian noise, in [0, 1]."""
    labels = rng.integers(0, 2, size=n)
    images = np.full((n, size, size, 3), 0.3, dtype="float32")
    half = size // 2
    images[labels == 0, :, :half] = 0.7
    images[labels == 1, :, half:] = 0.7
    images += rng.normal(0, 0.15, size=images.shape).astype("float32")
    return np.clip(images, 0, 1), labels


def test_small_convnet_learns_a_synthetic_task():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = _bright_half_images(512, rng)
    x_test, y_test = _bright_half_images(256, rng)
    model = create_baseline("small_convnet", (16, 16, 3), num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9
