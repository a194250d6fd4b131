"""Mixed precision and XLA: the policy holds for one run only, models learn, save and reload in float32."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import transferkit
from transferkit.baselines import create_baseline
from transferkit.layers import Preprocess
from transferkit.strategies.runtime import (cpu_supports_bf16, float32_model, gpus_support_float16, is_mixed, precision,
                                            resolve_precision)

FAST = ["image_size=32", "base_blocks=null", "data.per_class=null", "head.units=16", "batch_size=16",
        "augment.flip=horizontal", "augment.rotation=0", "augment.shear=0", "augment.zoom=0",
        "augment.width_shift=0", "augment.height_shift=0"]


def _run(tmp_path, stripes, *more, strategy="frozen_augment", **kwargs):
    return transferkit.run("demo_hed", strategy=strategy, data=stripes, class_names=["horizontal", "vertical"],
                           out=tmp_path / "runs", overrides=FAST + list(more), verbose=0, **kwargs)


def test_policy_names_resolve():
    assert resolve_precision("none") is None
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    if not tf.config.list_physical_devices("GPU"):
        assert resolve_precision("auto") == ("mixed_bfloat16" if cpu_supports_bf16() else None)
    with pytest.raises(transferkit.TransferkitError):
        transferkit.load_recipe("demo_hed", ["mixed_precision=float8"])


@pytest.mark.parametrize("details, expected", [([{"compute_capability": (7, 5)}], True),
                                              ([{"compute_capability": (6, 1)}], False),
                                              ([{"compute_capability": (8, 0)}, {"compute_capability": (6, 0)}], False),
                                              ([{}], False), ([], False)])
def test_auto_takes_float16_only_on_gpus_with_tensor_cores(monkeypatch, details, expected):
    gpus = [f"GPU:{i}" for i in range(len(details))]
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpus.index(gpu)])
    assert gpus_support_float16(gpus) is expected


def test_preprocess_and_softmax_dtypes_under_bfloat16():
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    reference = np.asarray(Preprocess("caffe")(images))
    with precision("mixed_bfloat16"):
        layer = Preprocess("caffe")
        out = layer(images)
        baseline = create_baseline("small_convnet", (32, 32, 3), 3)
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(keras.ops.cast(out, "float32")), reference, atol=1.0)  # bf16 steps <= 1
    assert baseline.layers[-1].dtype_policy.name == "float32"
    assert baseline.layers[0].dtype_policy.name == "mixed_bfloat16"
    assert keras.backend.standardize_dtype(baseline(np.zeros((1, 32, 32, 3), "float32")).dtype) == "float32"


def test_float32_model_switches_a_mixed_model_in_place_and_predicts_as_a_float32_rebuild():
    images = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(2)
    with precision("mixed_bfloat16"):
        inputs = keras.Input((32, 32, 3))
        model = keras.Model(inputs, create_baseline("small_convnet", (32, 32, 3), 3)(Preprocess("caffe")(inputs)))
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(images, np.arange(8) % 3, epochs=1, verbose=0)
    mixed = model.predict(images, verbose=0)  # traces a bfloat16 predict function, which must not survive
    rebuilt = float32_model(model, rebuild=True)
    switched = float32_model(model)
    assert switched is model and not is_mixed(model) and is_mixed(rebuilt) is False
    expected = rebuilt.predict(images, verbose=0)
    # relative: the small probabilities show bfloat16's rounding, which the check must be able to tell apart
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=0)
    assert not np.allclose(mixed, expected, rtol=1e-3, atol=0)


def _check_learned_and_reloads(result):
    accuracies = [row["accuracy"] for row in result.history]
    assert accuracies[-1] > accuracies[0] and result.metrics["test_accuracy"] >= 0.75
    assert keras.config.dtype_policy().name == "float32"
    reloaded = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)
    assert all(layer.dtype_policy.name == "float32" for layer in reloaded._flatten_layers())
    images = np.random.default_rng(1).integers(0, 255, (4, 32, 32, 3)).astype("float32")
    predicted = reloaded.predict(images, verbose=0)
    assert predicted.dtype == np.float32 and np.isfinite(predicted).all()
    np.testing.assert_allclose(predicted, result.model.predict(images, verbose=0), atol=1e-5)


def test_a_mixed_bfloat16_run_learns_and_saves_a_float32_model(tmp_path, stripes):
    result = _run(tmp_path, stripes, "mixed_precision=mixed_bfloat16", epochs=5)
    assert result.recipe.mixed_precision == "mixed_bfloat16" and result.metrics["precision"] == "mixed_bfloat16"
    _check_learned_and_reloads(result)
    extracted = _run(tmp_path, stripes, "mixed_precision=mixed_bfloat16", strategy="feature_extraction", epochs=4)
    assert extracted.metrics["feature_cache_hits"] == 0 and extracted.metrics["test_accuracy"] >= 0.75


def test_alexnet_trains_from_scratch_under_mixed_bfloat16(tmp_path, stripes):
    # its LocalResponseNormalization has no bfloat16 kernel on CPU; the layer computes in float32
    result = _run(tmp_path, stripes, "mixed_precision=mixed_bfloat16", "scratch.baseline=alexnet", strategy="scratch",
                  epochs=1, image_size=67)
    assert result.metrics["precision"] == "mixed_bfloat16" and result.metrics["baseline"] == "alexnet"
    assert np.isfinite(result.history[-1]["loss"]) and np.isfinite(result.metrics["test_loss"])


def test_a_jit_compiled_run_learns(tmp_path, stripes):
    # XLA compiles VGG16's training step in minutes on 2 cores: the small convnet keeps this test short
    result = _run(tmp_path, stripes, "jit_compile=true", "scratch.learning_rate=0.003", strategy="scratch", epochs=6)
    assert result.model.jit_compile if hasattr(result.model, "jit_compile") else True
    _check_learned_and_reloads(result)
