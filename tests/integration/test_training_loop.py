"""The training loop in whole runs: early stopping's saved model, gradual unfreezing, learning_rate auto, lr-find."""
import json

import keras
import numpy as np
import pytest

import transferkit
from conftest import cli
from transferkit.runs import read_history
from transferkit.weights import build_base

TINY = ["image_size=32", "head.units=16", "batch_size=16", "base_blocks=null", "data.per_class=null"]


def _run(tmp_path, stripes, strategy, *overrides, **kwargs):
    return transferkit.run("demo_hed", strategy=strategy, data=stripes, class_names=["h", "v"], out=tmp_path,
                           overrides=TINY + list(overrides), verbose=0, **kwargs)


def test_early_stopping_saves_the_kept_epoch_and_records_it(tmp_path, stripes):
    result = _run(tmp_path, stripes, "feature_extraction", "feature_extraction.patience=2",
                  "feature_extraction.monitor=val_accuracy", "head.dropout=0", epochs=40, learning_rate=0.03)
    stage = result.metrics["stages"][0]
    rows = read_history(result.run_dir / "history.csv")
    assert stage["stopped_early"] and stage["epochs_run"] == len(rows) < 40
    best = max(row["val_accuracy"] for row in rows)
    assert [row["val_accuracy"] for row in rows if row["epoch"] == stage["kept_epoch"]] == [best]
    saved = keras.models.load_model(result.run_dir / "model.keras")
    val_images, val_labels = stripes["val"]
    accuracy = np.mean(saved.predict(val_images.astype("float32"), verbose=0).argmax(1) == val_labels)
    assert accuracy == best


def test_gradual_unfreezing_trains_one_stage_per_milestone(tmp_path, stripes):
    result = _run(tmp_path, stripes, "finetune", "finetune.augment=false", "finetune.head_epochs=1",
                  "finetune.unfreeze_schedule=[[0, 1], [1, 2]]", "finetune.layer_decay=0.5", "finetune.patience=null",
                  epochs=2)
    assert [s["stage"] for s in result.metrics["stages"]] == ["head", "finetune", "finetune-2"]
    assert [s["epochs_run"] for s in result.metrics["stages"]] == [1, 1, 1]
    assert result.metrics["boundary_cache"] == "block3_pool"  # the deepest milestone's boundary
    assert "block4_conv1" in result.metrics["unfrozen_layers"] and "block3_conv1" not in result.metrics["unfrozen_layers"]
    stages = [row["stage"] for row in read_history(result.run_dir / "history.csv")]
    assert stages == ["head", "finetune", "finetune-2"]


def test_learning_rate_auto_trains_at_the_range_tests_suggestion(tmp_path, stripes):
    result = _run(tmp_path, stripes, "feature_extraction", epochs=3, learning_rate="auto")
    rate = result.metrics["stages"][0]["learning_rate"]
    assert rate != 1e-3 and 1e-6 < rate < 1  # not the recipe's default: found
    assert result.recipe.feature_extraction.learning_rate == "auto"


def test_lr_find_command_prints_a_suggestion_and_writes_its_plot(tmp_path, photos):
    out = cli("lr-find", photos, "--strategy", "frozen_augment", "--set", "image_size=32", "--set", "backbone=vgg16",
              "--set", "weights=hed-bsds500", "--set", "base_blocks=2", "--lr", "1e-5,1", "--out", tmp_path,
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "suggested learning rate" in out.stdout
    plot = next(tmp_path.glob("*-lr-find-*.png"))
    saved = json.loads(plot.with_suffix(".json").read_text())
    assert saved["stage"] == "head" and len(saved["rates"]) > 20 and saved["suggestion"] in saved["rates"]
    assert saved["rates"][0] == pytest.approx(1e-5) and max(saved["rates"]) <= 1  # the --lr sweep
    for args, message in ((["--stage", "nope"], "no stage 'nope'"), (["--lr", "1,1e-3"], "0 < START < END")):
        bad = cli("lr-find", photos, *args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def _features(model, images):
    """The run's own frozen features of ``images``: its preprocessing, then its conv base."""
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "head")
    features = base(model.get_layer("preprocess")(images.astype("float32")), training=False)
    return keras.ops.convert_to_numpy(features).mean(axis=(1, 2))


def test_a_logistic_head_answers_as_the_logistic_regression_on_the_same_features(tmp_path, stripes):
    from transferkit.probe import fit_quietly, logistic

    result = _run(tmp_path, stripes, "feature_extraction", "feature_extraction.fit=logistic")
    stage, = result.metrics["stages"]
    assert stage["fit"] == "logistic" and stage["kept_epoch"] == 1
    assert [row["stage"] for row in read_history(result.run_dir / "history.csv")] == ["head"]
    model = keras.models.load_model(result.run_dir / "model.keras")
    assert [layer.name for layer in model.get_layer("head").layers if layer.weights] == ["predictions"]
    # the same logistic regression, fitted here at the C the run kept on validation
    pipeline = fit_quietly(logistic(stage["C"]), _features(model, stripes["train"][0]), stripes["train"][1])
    val_images, val_labels = stripes["val"]
    assert stage["best"] == pytest.approx(pipeline.score(_features(model, val_images), val_labels))
    test_images, test_labels = stripes["test"]
    ours = model.predict(test_images.astype("float32"), verbose=0).argmax(1)
    np.testing.assert_array_equal(ours, pipeline.predict(_features(model, test_images)))
    assert result.metrics["test_accuracy"] == pytest.approx(np.mean(ours == test_labels))


@pytest.mark.parametrize("strategy", ["feature_extraction", "finetune"])
def test_under_bfloat16_a_logistic_head_is_fitted_on_the_float32_features_the_saved_model_computes(
        tmp_path, stripes, strategy):
    from transferkit.probe import fit_quietly, logistic

    fit = "feature_extraction.fit=logistic" if strategy == "feature_extraction" else "finetune.head_fit=logistic"
    result = _run(tmp_path, stripes, strategy, fit, "mixed_precision=mixed_bfloat16", "finetune.augment=false",
                  "finetune.patience=null", epochs=1)
    assert result.metrics["precision"] == "mixed_bfloat16"
    head = read_history(result.run_dir / "history.csv")[0]
    recipe = result.recipe
    base = build_base(recipe.backbone, recipe.weights, recipe.image_size, recipe.base_blocks)  # frozen, float32
    model = keras.models.load_model(result.run_dir / "model.keras")  # for its preprocessing

    def features(images):
        return keras.ops.convert_to_numpy(base(model.get_layer("preprocess")(images.astype("float32")))).mean((1, 2))

    pipeline = fit_quietly(logistic(result.metrics["stages"][0]["C"]), features(stripes["train"][0]),
                           stripes["train"][1])
    val_images, val_labels = stripes["val"]
    p = pipeline.predict_proba(features(val_images))[np.arange(len(val_labels)), val_labels]
    # the loss the run recorded for its head is that of the same fit on the float32 features (bfloat16 ones
    # give a visibly different fit)
    assert head["val_loss"] == pytest.approx(-np.mean(np.log(p)), rel=1e-3, abs=1e-6)


def test_finetuning_from_a_logistic_head_keeps_it_unless_it_does_better(tmp_path, stripes):
    result = _run(tmp_path, stripes, "finetune", "finetune.augment=false", "finetune.head_fit=logistic",
                  "finetune.patience=null", epochs=2)
    head, tuned = result.metrics["stages"]
    assert head["fit"] == "logistic" and tuned["stage"] == "finetune" and tuned["epochs_run"] == 2
    rows = read_history(result.run_dir / "history.csv")
    assert [row["stage"] for row in rows] == ["head", "finetune", "finetune"]
    assert result.metrics["best_val_accuracy"] >= rows[0]["val_accuracy"]
    kept = next(row for row in rows if row["epoch"] == tuned["kept_epoch"])
    val_images, val_labels = stripes["val"]
    saved = keras.models.load_model(result.run_dir / "model.keras")
    assert np.mean(saved.predict(val_images.astype("float32"), verbose=0).argmax(1) == val_labels) == \
        pytest.approx(kept["val_accuracy"])


def test_a_run_stopped_after_its_logistic_head_resumes_as_if_never_stopped(tmp_path, stripes):
    from transferkit.api import RunInterrupted

    class StopInFineTuning(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:  # the second epoch of fine-tuning (epoch 1 is the fitted head), before its checkpoint
                raise KeyboardInterrupt

    args = ("finetune.augment=false", "finetune.head_fit=logistic", "finetune.patience=null", "deterministic=true",
            "mixed_precision=none")
    straight = _run(tmp_path / "straight", stripes, "finetune", *args, epochs=3)
    with pytest.raises(RunInterrupted):
        _run(tmp_path / "stopped", stripes, "finetune", *args, epochs=3, callbacks=[StopInFineTuning()])
    run_dir, = (tmp_path / "stopped").iterdir()
    resumed = transferkit.run(resume=str(run_dir), data=stripes, class_names=["h", "v"], verbose=0)
    assert resumed.metrics["stages"] == straight.metrics["stages"]
    ours, theirs = (read_history(r.run_dir / "history.csv") for r in (resumed, straight))
    assert [row["stage"] for row in ours] == ["head", "finetune", "finetune", "finetune"]
    for mine, other in zip(ours, theirs):
        assert mine["val_loss"] == pytest.approx(other["val_loss"], rel=1e-4)
    for a, b in zip(resumed.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
