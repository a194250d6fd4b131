"""Tests for transferkit.baselines: sizes, parameter counts, errors, saving, and tiny training runs."""
import json
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import transferkit
from transferkit.baselines import BASELINES, BaselineSpec, create_baseline
from transferkit.errors import TransferkitError
from transferkit.explain import conv_layers, grad_cam
from transferkit.layers import LocalResponseNormalization
from transferkit.strategies.runtime import precision
from transferkit.strategies.scratch import scratch_models
from transferkit.training.auxiliary import AuxiliaryClassifiers
from transferkit.training.losses import loss_and_metric


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
    assert set(BASELINES) == {"alexnet", "vgg16", "vgg11", "googlenet", "small_convnet", "lenet5"}
    for name, spec in BASELINES.items():
        assert isinstance(spec, BaselineSpec)
        assert spec.name == name
        assert spec.min_size <= spec.default_size
        assert spec.description
        assert (spec.auxiliary is None) == (spec.auxiliary_weight == 0) == (name != "googlenet")


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


def _training_network(spec, size):
    """What training builds: the network, with its auxiliary classifiers when it has them."""
    network = spec.builder((size, size, 3), 2)
    return spec.auxiliary(network, 2) if spec.auxiliary else network


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_min_size_is_the_smallest_input_that_builds(name):
    spec = BASELINES[name]
    below = spec.min_size - 1
    with pytest.raises(ValueError):
        _training_network(spec, below)  # Keras itself refuses: min_size is not arbitrary
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


# Table 1 of Szegedy et al. 2014 (GoogLeNet): each inception module's output depth, and the params column, whose
# units are 1024 (its 1000-way linear layer, 1,024,000 weights, is listed as 1000K); it counts no biases.
GOOGLENET_DEPTHS = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}
GOOGLENET_TABLE_PARAMS = (2.7 + 112 + 159 + 380 + 364 + 437 + 463 + 580 + 840 + 1072 + 1388 + 1000) * 1024


def test_googlenet_has_the_papers_modules_and_parameter_count():
    started = time.perf_counter()
    model = create_baseline("googlenet", (224, 224, 3), num_classes=1000)
    training = BASELINES["googlenet"].auxiliary(model, 1000)
    built = time.perf_counter() - started
    assert model.count_params() == 6_998_552 and len(model.outputs) == 1
    kernels = sum(int(np.prod(w.shape)) for w in model.weights if w.path.endswith("kernel"))
    assert abs(kernels - GOOGLENET_TABLE_PARAMS) / GOOGLENET_TABLE_PARAMS < 0.01  # 6,990,272 vs 6,960,845
    depths = {layer.name.removeprefix("inception_"): layer.output.shape[1:] for layer in model.layers
              if isinstance(layer, keras.layers.Concatenate)}
    assert {module: shape[-1] for module, shape in depths.items()} == GOOGLENET_DEPTHS
    assert [depths[m][0] for m in ("3a", "4a", "5a")] == [28, 14, 7]  # Table 1's map sizes at 224 px
    assert len([layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]) == 3 + 9 * 6
    assert sum(isinstance(layer, LocalResponseNormalization) for layer in model.layers) == 2
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.4]
    # the auxiliary classifiers: 4x4x512 and 4x4x528 pooled maps, conv 128, dense 1024, dropout 0.7, softmax
    assert training.output_shape == [(None, 1000)] * 3
    assert [training.get_layer(f"aux_{m}_pool").output.shape[1:] for m in ("4a", "4d")] == [(4, 4, 512), (4, 4, 528)]
    assert [training.get_layer(f"aux_{m}_dropout").rate for m in ("4a", "4d")] == [0.7, 0.7]
    aux_4a = (512 * 128 + 128) + (4 * 4 * 128 * 1024 + 1024) + (1024 * 1000 + 1000)
    aux_4d = aux_4a + 16 * 128  # 528 channels into its 1x1 conv
    assert training.count_params() == 6_998_552 + aux_4a + aux_4d
    assert built < 60, f"building GoogLeNet at 224 px took {built:.0f} s"
    keras.backend.clear_session()


def _aux_trainer(label_smoothing=0.0, soft=False):
    """A tiny classifier with one auxiliary classifier, its AuxiliaryClassifiers and their compiled loss."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    output = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8, activation="relu")(hidden))
    auxiliary = keras.layers.Dense(3, activation="softmax")(hidden)
    classifier = keras.Model(inputs, output)
    trainer = AuxiliaryClassifiers(keras.Model(inputs, [output, auxiliary]), weight=0.3)
    loss, metric = loss_and_metric(label_smoothing, soft)
    trainer.compile(keras.optimizers.SGD(0.1), loss=loss, metrics=[metric])
    return classifier, trainer, loss


@pytest.mark.parametrize("label_smoothing, soft", [(0.0, False), (0.1, False), (0.0, True)])
def test_auxiliary_losses_add_in_training_only(label_smoothing, soft):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.dirichlet(np.ones(3), size=6).astype("float32") if soft else np.array([0, 1, 2, 0, 1, 2])
    weights = np.array([1.0, 2.0, 0.5, 1.0, 1.0, 3.0], "float32")  # as class_weight gives them
    classifier, trainer, loss = _aux_trainer(label_smoothing, soft)
    predicted = trainer(x, training=True)
    output, auxiliary = predicted
    got = trainer.compute_loss(x, y, predicted, weights, training=True)
    expected = loss(y, output, weights) + 0.3 * loss(y, auxiliary[0], weights)
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-6)
    evaluated = trainer.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    assert evaluated["loss"] == pytest.approx(float(loss(y, classifier(x), weights)), rel=1e-5)  # dropped
    np.testing.assert_allclose(trainer.predict(x, verbose=0), keras.ops.convert_to_numpy(classifier(x)), rtol=1e-6)
    logs = trainer.train_on_batch(x, y, sample_weight=weights, return_dict=True)
    assert logs["loss"] == pytest.approx(float(expected), rel=1e-5) and set(logs) == {"loss", "accuracy"}


def test_training_with_the_auxiliary_classifiers_trains_the_classifier_and_them():
    classifier, trainer, _ = _aux_trainer()
    x, y = np.random.default_rng(6).normal(size=(6, 4)).astype("float32"), np.array([0, 1, 2, 0, 1, 2])
    before = [w.copy() for w in trainer.get_weights()]
    trainer.train_on_batch(x, y)
    moved = [not np.array_equal(a, b) for a, b in zip(before, trainer.get_weights())]
    assert all(moved) and len(moved) == len(classifier.weights) + 2  # the auxiliary Dense's kernel and bias


def test_scratch_models_train_googlenet_with_auxiliary_classifiers_and_keep_one_output():
    model, trainer = scratch_models("googlenet", 65, 4)
    assert isinstance(trainer, AuxiliaryClassifiers) and trainer.auxiliary_weight == 0.3
    assert len(model.outputs) == 1 and not [w for w in model.weights if "aux" in w.path]
    assert {id(w) for w in model.weights} < {id(w) for w in trainer.weights}
    model, trainer = scratch_models("lenet5", 32, 4)
    assert trainer is model


def test_a_tiny_googlenet_run_learns_and_saves_a_model_with_one_output(tmp_path, stripes):
    result = transferkit.run("demo_hed", strategy="scratch", data=stripes, class_names=["h", "v"], out=tmp_path,
                             epochs=4, image_size=65, overrides=["scratch.baseline=googlenet", "batch_size=16"],
                             verbose=0)
    val = [row["val_accuracy"] for row in result.history]
    assert max(val) > val[0] and result.metrics["test_accuracy"] >= 0.8, (val, result.metrics["test_accuracy"])
    # in training the loss carries the two auxiliary losses: at chance each is ln 2, so about 1.6 ln 2 in all
    assert result.history[0]["loss"] > 1.3 * result.history[0]["val_loss"]
    loaded = keras.saving.load_model(result.run_dir / "model.keras", safe_mode=True)
    assert len(loaded.outputs) == 1 and loaded.output_shape == (None, 2)
    assert not [layer.name for layer in loaded.get_layer("googlenet").layers if layer.name.startswith("aux")]
    assert result.metrics["total_params"] == loaded.count_params() == 6_998_552 - 1000 * 1025 + 2 * 1025
    images = np.random.default_rng(7).uniform(0, 255, (4, 65, 65, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), result.model.predict(images, verbose=0), rtol=1e-5)
    heatmap, probabilities = grad_cam(loaded, images[0])  # the functional network opens up for Grad-CAM too
    assert heatmap.shape == (3, 3) and conv_layers(loaded)[-1].startswith("inception_5b_")
    np.testing.assert_allclose(probabilities, loaded.predict(images[:1], verbose=0)[0], rtol=1e-4)
    keras.backend.clear_session()
