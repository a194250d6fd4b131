"""Calibration in a run: the temperature fitted on the validation split is in the saved model and its exports, and
``transferkit predict --reject`` answers unknown below the rejection threshold."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import transferkit
from conftest import cli as transferkit_cli, tiny_run
from transferkit.calibration import expected_calibration_error, scaled
from transferkit.evaluation import classification_report
from transferkit.runs import load_predictions
from transferkit.temperature import fold_temperature, softmax_dense


NAMES = ("horizontal", "vertical")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, stripes):
    """A tiny feature-extraction run on the stripes whose validation split has 4 of its 32 labels flipped: a
    validation split with wrong answers, which pins a temperature down (a perfect one would not)."""
    images, labels = stripes["val"]
    flipped = np.where(np.arange(len(labels)) < 4, 1 - labels, labels)
    return tiny_run(tmp_path_factory.mktemp("calibrated"), {"train": stripes["train"], "val": (images, flipped),
                                                             "test": stripes["test"]}, class_names=NAMES)


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    """Eight uniform-noise PNGs: images of no class the model knows."""
    root = tmp_path_factory.mktemp("noise")
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(root / f"noise-{i}.png")
    return sorted(root.glob("*.png"))


def test_the_saved_model_answers_with_the_temperature_fitted_on_validation(calibrated, stripes):
    metrics = json.loads((calibrated.run_dir / "metrics.json").read_text())
    block = metrics["calibration"]
    assert "not_calibrated" not in block and 0.05 < block["temperature"] < 20
    assert block["threshold_keeps"] >= 0.95 and 0 < block["reject_threshold"] <= 1

    images, labels = stripes["test"]
    model = transferkit.load(calibrated.run_dir)
    uncalibrated = transferkit.load(calibrated.run_dir)  # the same file with the temperature taken out again
    fold_temperature(softmax_dense(uncalibrated.model)[0], 1 / block["temperature"])
    after, before = model.predict(images), uncalibrated.predict(images)
    np.testing.assert_allclose(after, scaled(before, block["temperature"]), atol=1e-5)
    assert np.array_equal(after.argmax(axis=1), before.argmax(axis=1))

    saved = load_predictions(calibrated.run_dir)  # what metrics.json and compare read: the calibrated answers
    np.testing.assert_allclose(saved["test_probabilities"], after, atol=1e-5)
    assert metrics["test_loss"] == pytest.approx(classification_report(labels, after, NAMES)["loss"], abs=1e-4)
    assert block["ece_test"] == pytest.approx(expected_calibration_error(labels, after), abs=1e-4)
    assert block["ece_test_before"] == pytest.approx(expected_calibration_error(labels, before), abs=1e-4)


def test_a_keras_export_carries_the_temperature_and_the_threshold(calibrated, stripes, tmp_path):
    block = json.loads((calibrated.run_dir / "metrics.json").read_text())["calibration"]
    manifest = transferkit.export(calibrated.run_dir, "keras", out=tmp_path / "keras", data=stripes["test"])
    labels = json.loads((tmp_path / "keras" / "labels.json").read_text())
    for stored in (manifest, labels):
        assert stored["temperature"] == block["temperature"]
        assert stored["reject_threshold"] == block["reject_threshold"]
    exported = transferkit.load(tmp_path / "keras")
    assert exported.calibration == {"temperature": block["temperature"], "reject_threshold": block["reject_threshold"]}
    np.testing.assert_allclose(exported.predict(stripes["test"][0]), calibrated.model.predict(stripes["test"][0]),
                               atol=1e-5)
    (tmp_path / "keras" / "export.json").unlink()  # labels.json alone, as a Keras export copied without it
    assert transferkit.load(tmp_path / "keras").threshold() == block["reject_threshold"]


def test_predict_reject_answers_unknown_below_the_threshold(calibrated, stripes, noise, tmp_path):
    stored = json.loads((calibrated.run_dir / "metrics.json").read_text())["calibration"]["reject_threshold"]
    in_class = []
    for i, image in enumerate(stripes["test"][0][:4]):
        Image.fromarray(image).save(tmp_path / f"stripes-{i}.png")
        in_class.append(tmp_path / f"stripes-{i}.png")
    out = transferkit_cli("predict", calibrated.run_dir, *in_class, *noise, "--json", "--reject", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    assert {a["reject_threshold"] for a in answers} == {stored}
    for answer in answers:
        top = answer["predictions"][0]
        assert answer["answer"] == (top["label"] if top["probability"] >= stored else "unknown")

    # a noise image can saturate to 1.0 in float32 (seen with bfloat16 training), which no threshold rejects
    top_noise = transferkit.load(calibrated.run_dir).predict(noise).max(axis=1)
    rejectable = [path for path, top in zip(noise, top_noise) if top < 1]
    assert len(rejectable) >= len(noise) // 2, f"the noise images' answers saturate: {top_noise}"
    high = f"{np.nextafter(top_noise[top_noise < 1].max(), 1):.17g}"  # just above each such image's top probability
    out = transferkit_cli("predict", calibrated.run_dir, *rejectable, "--reject", high, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(rejectable) and all(": unknown (top probability below" in line for line in lines)


def test_predict_reject_without_a_stored_threshold_or_with_a_bad_one_is_one_line(calibrated, noise, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(calibrated.run_dir, old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["calibration"]  # a run from before calibration
    (old / "metrics.json").write_text(json.dumps(metrics))
    out = transferkit_cli("predict", old, noise[0], "--reject", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "stores no rejection threshold" in out.stderr and "--reject 0.8" in out.stderr
    out = transferkit_cli("predict", old, noise[0], "--reject", "0.5", cwd=tmp_path)  # a given threshold works
    assert out.returncode == 0 and ": unknown" not in out.stdout  # of two classes, the top one has at least 0.5
    out = transferkit_cli("predict", old, "--reject", noise[0], cwd=tmp_path)
    assert out.returncode == 2 and "is not a probability from 0 to 1 (put --reject after the images" in out.stderr
    for value in ("1.5", "-0.1", "-1"):  # a number out of range: no hint about where --reject goes
        out = transferkit_cli("predict", old, noise[0], "--reject", value, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.strip().endswith(f"'{value}' is not a probability from 0 to 1"), \
            out.stderr
