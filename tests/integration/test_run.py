"""Every strategy end to end through the Python API, on tiny data and the real offline VGG16 weights."""
import csv
import json

import keras
import numpy as np
import pytest

import transferkit
from transferkit.features import cache_dir
from transferkit.runs import load_predictions

FAST = ["head.units=16", "batch_size=16", "image_size=32", "base_blocks=", "finetune.augment=true"]


def _run(tmp_path, stripes, strategy, *more, **kwargs):
    return transferkit.run("demo_hed", strategy=strategy, data=stripes, class_names=["horizontal", "vertical"],
                           out=tmp_path / "runs", overrides=FAST + list(more), verbose=0, **kwargs)


def _check_run_dir(result):
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"recipe.yaml", "model.keras", "history.csv", "metrics.json", "curves.png"} <= names
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "per_class_accuracy", "wall_time_s", "trainable_params",
                "total_params", "weights"):
        assert key in metrics
    rows = list(csv.DictReader((result.run_dir / "history.csv").open()))
    assert len(rows) == metrics["epochs"] > 0
    assert (result.run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    reloaded = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), result.model.predict(images, verbose=0),
                               atol=1e-5)
    assert transferkit.load_recipe(str(result.run_dir / "recipe.yaml")) == result.recipe
    answers = load_predictions(result.run_dir)  # the per-image answers paired tests read
    test = answers["test_probabilities"]
    assert test.shape == (metrics["num_examples"]["test"], 2)
    assert answers["val_probabilities"].shape == (metrics["num_examples"]["val"], 2)
    assert np.mean(test.argmax(1) == answers["test_labels"]) == pytest.approx(metrics["test_accuracy"])
    return metrics


def test_feature_extraction_learns_and_reuses_its_cache(tmp_path, stripes):
    first = _run(tmp_path, stripes, "feature_extraction", epochs=8)
    metrics = _check_run_dir(first)
    assert metrics["test_accuracy"] >= 0.85
    assert metrics["feature_cache_hits"] == 0 and metrics["weights"].startswith("hed-bsds500:")
    assert metrics["trainable_params"] < metrics["total_params"]
    cached = sorted(cache_dir().glob("*.npz"))
    assert len(cached) == 2  # train and val
    before = {p: p.stat().st_mtime_ns for p in cached}
    second = _run(tmp_path, stripes, "feature_extraction", epochs=1)
    assert second.metrics["feature_cache_hits"] == 2
    assert {p: p.stat().st_mtime_ns for p in cached} == before


def test_frozen_augment_trains_only_the_head(tmp_path, stripes):
    flips_only = ["augment.rotation=0", "augment.shear=0", "augment.zoom=0", "augment.width_shift=0",
                  "augment.height_shift=0"]  # resampling blurs 4-pixel stripes; augmentations are tested alone
    result = _run(tmp_path, stripes, "frozen_augment", *flips_only, epochs=8)
    metrics = _check_run_dir(result)
    base = result.model.get_layer("vgg16")
    assert not any(layer.trainable for layer in base.layers if layer.weights)
    head = result.model.get_layer("head")
    assert metrics["trainable_params"] == sum(int(np.prod(w.shape)) for w in head.trainable_weights)
    assert metrics["test_accuracy"] >= 0.8


def test_finetune_unfreezes_the_top_block_after_training_the_head(tmp_path, stripes):
    result = _run(tmp_path, stripes, "finetune", "finetune.head_epochs=8", "finetune.augment=false", epochs=2)
    metrics = _check_run_dir(result)
    assert [row["stage"] for row in result.history] == ["head"] * 8 + ["finetune"] * 2
    assert metrics["unfrozen_layers"] == ["block5_conv1", "block5_conv2", "block5_conv3"]
    base = result.model.get_layer("vgg16")
    assert {layer.name for layer in base.layers if layer.trainable and layer.weights} == set(
        metrics["unfrozen_layers"])
    assert metrics["test_accuracy"] >= 0.85


def test_finetune_keeps_batchnorm_in_inference_mode(tmp_path, stripes):
    """ResNet50 with its top stage unfrozen: BatchNorm moving statistics must not move during training."""
    result = _run(tmp_path, stripes, "finetune", "backbone=resnet50", "weights=none", "finetune.head_epochs=0",
                  "finetune.augment=false", epochs=1)
    base = result.model.get_layer("resnet50")
    fresh = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    bn, fresh_bn = base.get_layer("conv5_block3_3_bn"), fresh.get_layer("conv5_block3_3_bn")
    assert not bn.trainable
    for mine, untouched in zip(bn.weights, fresh_bn.weights):  # gamma, beta, moving mean and variance
        np.testing.assert_array_equal(mine.numpy(), untouched.numpy())
    conv = base.get_layer("conv5_block3_3_conv")
    assert conv.trainable and "conv5_block3_3_conv" in result.metrics["unfrozen_layers"]


def test_scratch_baseline_same_reporting(tmp_path, stripes):
    result = _run(tmp_path, stripes, "scratch", "scratch.baseline=lenet5", epochs=3)
    metrics = _check_run_dir(result)
    assert metrics["baseline"] == "lenet5" and metrics["backbone"] is None and metrics["weights"] is None
    assert metrics["trainable_params"] == metrics["total_params"]


def test_a_folder_of_images_as_data(tmp_path, stripes):
    from PIL import Image

    images, labels = stripes["train"]
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "photos" / ("horizontal", "vertical")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    result = transferkit.run("demo_hed", strategy="feature_extraction", data=str(tmp_path / "photos"),
                             out=tmp_path / "runs", overrides=FAST, epochs=6, verbose=0)
    assert result.metrics["class_names"] == ["horizontal", "vertical"]
    assert sum(result.metrics["num_examples"].values()) == len(images)
    assert result.metrics["test_accuracy"] >= 0.8
    assert result.recipe.name == "photos" and result.run_dir.name.startswith("photos-feature_extraction-")
    assert result.recipe.image_size == 32  # given (FAST), so kept


def test_a_folder_as_the_recipe_is_named_for_it_and_sized_by_its_images(tmp_path, capsys):
    from PIL import Image

    from conftest import stripe_images

    images, labels = stripe_images(40, size=48, seed=4)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "my photos" / ("horizontal", "vertical")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    result = transferkit.run(str(tmp_path / "my photos"), strategy="feature_extraction", epochs=2,
                             out=tmp_path / "runs", verbose=1)
    assert result.recipe.name == "my-photos" and result.run_dir.name.startswith("my-photos-feature_extraction-")
    assert result.recipe.backbone == "efficientnet_lite0" and result.recipe.weights == "imagenet"
    assert result.recipe.image_size == 224  # ImageNet weights: the size they were trained at
    assert result.recipe.scratch.image_size == 64  # 48 px images, from scratch: rounded up to a multiple of 32
    captured = capsys.readouterr()
    printed = captured.out
    assert ("image size 224 px: the size efficientnet_lite0's imagenet weights were trained at (the training "
            "images' median side is 48 px; the scratch baseline trains at 64 px)") in printed
    assert "data      my-photos: 2 classes" in printed
    stages = next(line for line in printed.splitlines() if line.startswith("stages    "))
    assert stages.startswith("stages    head fitted as a logistic regression (C chosen by val_accuracy); batch ")
    assert "schedule" not in stages and "early stopping" not in stages  # a fit has neither
    assert "stage 'head': logistic regression on 1280 pooled features" in printed  # the folder recipe's head
    assert "warning: --epochs changes nothing: feature_extraction.fit is logistic" in captured.err
    saved = transferkit.load_recipe(str(result.run_dir / "recipe.yaml"))
    assert saved.name == "my-photos" and saved.image_size == 224 and saved.description.startswith("images in ")
    scratch = transferkit.run(str(tmp_path / "my photos"), strategy="scratch", epochs=1, out=tmp_path / "runs",
                              verbose=1)
    assert scratch.recipe.image_size == 64
    assert "image size 64 px: the training images' median side is 48 px" in capsys.readouterr().out


def test_tensorboard_logs_every_epoch_of_every_stage_with_the_learning_rate(tmp_path, stripes):
    import tensorflow as tf

    result = _run(tmp_path, stripes, "finetune", "finetune.head_epochs=2", "finetune.augment=false", epochs=2)
    scalars = {}
    for kind in ("train", "validation"):
        for event_file in sorted((result.run_dir / "logs" / kind).glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(event_file)):
                for value in event.summary.value:
                    scalars.setdefault((kind, value.tag), {})[event.step] = float(tf.make_ndarray(value.tensor))
    assert sorted(scalars[("train", "epoch_loss")]) == [0, 1, 2, 3]  # two head epochs, then two fine-tuning
    assert sorted(scalars[("validation", "epoch_accuracy")]) == [0, 1, 2, 3]
    rates = scalars[("train", "epoch_learning_rate")]
    assert rates[0] == pytest.approx(result.recipe.finetune.head_learning_rate)
    assert rates[3] == pytest.approx(result.recipe.finetune.learning_rate)
    history = {int(row["epoch"]) - 1: float(row["loss"]) for row in result.history}
    assert scalars[("train", "epoch_loss")] == pytest.approx(history, rel=1e-5)
