"""The training loop in whole runs: early stopping's saved model, gradual unfreezing, learning_rate auto, lr-find."""
import json

import keras
import numpy as np
import pytest

import transferkit
from conftest import cli
from transferkit.runs import read_history

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
