"""transferkit export, predict and evaluate as a user runs them (the command, in this process), on a run trained on a
folder."""
import json
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import cli as transferkit_cli, tiny_run

NAMES = ("horizontal", "vertical")


def _write_folder(root, images, labels):
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / NAMES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / NAMES[label] / f"{i}.png")
        paths.append(root / NAMES[label] / f"{i}.png")
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stripes):
    """A feature-extraction run on a folder of stripe PNGs (so its recipe can re-load its test split)."""
    root = tmp_path_factory.mktemp("cli")
    images = np.concatenate([stripes["train"][0], stripes["test"][0]])
    labels = np.concatenate([stripes["train"][1], stripes["test"][1]])
    _write_folder(root / "photos", images, labels)
    return tiny_run(root, str(root / "photos"), epochs=6)


def test_export_then_predict_with_an_unreadable_file_among_good_ones(trained, stripes, tmp_path):
    out = transferkit_cli("export", trained.run_dir, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    export_dir = trained.run_dir / "export" / "savedmodel"
    manifest = json.loads((export_dir / "export.json").read_text())
    assert manifest["format"] == "savedmodel" and "saved_model.pb" in manifest["files"]
    assert f"max abs diff {manifest['parity']['max_abs_diff']:.2e}" in out.stdout

    x, y = stripes["val"]
    good = _write_folder(tmp_path / "images", x[:2], y[:2])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = transferkit_cli("predict", export_dir, good[0], "broken.jpg", good[1], "--top-k", "2", "--json",
                          cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: cannot read broken.jpg: not an image (unrecognised format)"
    answers = json.loads(out.stdout)
    assert [a["image"] for a in answers] == [str(good[0]), "broken.jpg", str(good[1])]
    assert "error" in answers[1] and "predictions" not in answers[1]
    expected = trained.model.predict(x[:2].astype("float32"), verbose=0)
    for answer, row in zip((answers[0], answers[2]), expected):
        assert [p["label"] for p in answer["predictions"]] == [NAMES[i] for i in np.argsort(-row)]
        assert answer["predictions"][0]["probability"] == pytest.approx(row.max(), abs=1e-4)

    out = transferkit_cli("predict", trained.run_dir, good[1], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    label, probability = out.stdout.strip().split(": ")[1].split()
    assert label == NAMES[expected[1].argmax()] and float(probability) == pytest.approx(expected[1].max(), abs=1e-4)

    out = transferkit_cli("predict", trained.run_dir, "images", "--json", cwd=tmp_path)  # a folder: its images
    assert out.returncode == 0, out.stderr
    assert sorted(a["image"] for a in json.loads(out.stdout)) == sorted(str(p.relative_to(tmp_path)) for p in good)


def test_evaluate_its_own_test_split_then_a_folder_with_tta(trained, stripes, tmp_path):
    out = transferkit_cli("evaluate", trained.run_dir, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads((trained.run_dir / "evaluation.json").read_text())
    assert report["accuracy"] == pytest.approx(trained.metrics["test_accuracy"], abs=1e-9)
    assert report["num_examples"] == trained.metrics["num_examples"]["test"]
    assert f"accuracy  {report['accuracy']:.4f}" in out.stdout and "precision  recall" in out.stdout
    assert (trained.run_dir / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    x, y = stripes["val"]
    _write_folder(tmp_path / "val", x, y)
    out = transferkit_cli("evaluate", trained.run_dir, "--data", "val", "--tta", "6", "--out", "report",
                          cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert report["tta"] == 6 and report["num_examples"] == len(y) and len(report["views"]) == 6
    assert sum(map(sum, report["confusion_matrix"])) == len(y)
    assert (tmp_path / "report" / "confusion_matrix.png").is_file()



def test_export_tflite_and_onnx_measured_on_the_runs_test_split_then_predict_and_evaluate_them(trained, stripes,
                                                                                               tmp_path):
    test_accuracy = trained.metrics["test_accuracy"]
    refused = transferkit_cli("export", trained.run_dir, "--format", "tflite", "--max-accuracy-drop", "-1",
                              cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: the tflite export loses 0.00 accuracy points on test split of recipe 'photos' (folder) "
        f"({test_accuracy:.4f} -> {test_accuracy:.4f} on {trained.metrics['num_examples']['test']} images), "
        f"more than the -1 allowed (--max-accuracy-drop); nothing was written"]
    assert [p.name for p in (trained.run_dir / "export").glob("*") if p.name == "tflite" or p.name[0] == "."] == []

    out = transferkit_cli("export", trained.run_dir, "--format", "tflite", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    tflite = trained.run_dir / "export" / "tflite"
    measured = json.loads((tflite / "export.json").read_text())["measured"]
    assert measured["accuracy"] == measured["model_accuracy"] == pytest.approx(test_accuracy, abs=1e-9)
    assert measured["data"].startswith("test split of recipe")
    assert f"accuracy  {measured['accuracy']:.4f} (model {measured['model_accuracy']:.4f})" in out.stdout
    assert f"latency   {measured['latency_ms']:.2f} ms per image in {measured['runtime']}" in out.stdout
    assert f"size      {measured['size_bytes'] / 1e6:.2f} MB" in out.stdout
    out = transferkit_cli("export", trained.run_dir, "--format", "onnx", "--out", "onnx", cwd=tmp_path)
    assert out.returncode == 0, out.stderr

    x, y = stripes["val"]
    images = _write_folder(tmp_path / "images", x[:3], y[:3])
    expected = trained.model.predict(x[:3].astype("float32"), verbose=0)
    for source in (tflite, tmp_path / "onnx" / "model.onnx"):
        out = transferkit_cli("predict", source, *images, "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        for answer, row in zip(json.loads(out.stdout), expected):
            assert answer["predictions"][0]["label"] == NAMES[row.argmax()]
            assert answer["predictions"][0]["probability"] == pytest.approx(row.max(), abs=1e-3)

    out = transferkit_cli("evaluate", tflite, cwd=tmp_path)  # the run's own test split, found via export.json
    assert out.returncode == 0, out.stderr
    report = json.loads((tflite / "evaluation.json").read_text())
    assert report["accuracy"] == pytest.approx(test_accuracy, abs=1e-9) and report["runtime"] == measured["runtime"]
    assert f"{measured['runtime']}" in out.stdout.splitlines()[0]

    moved = shutil.copytree(tmp_path / "onnx", tmp_path / "elsewhere")
    manifest = json.loads((moved / "export.json").read_text())
    (moved / "export.json").write_text(json.dumps({**manifest, "run_dir": str(tmp_path / "deleted-run")}))
    out = transferkit_cli("evaluate", moved, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: there is no run directory to re-load a test split from: pass a folder of "
                                  "class subfolders: data=FOLDER in Python, --data FOLDER on the command line")


def test_a_keras_export_of_a_run_named_by_a_relative_path(trained, stripes, tmp_path):
    # the README's usage, from the folder that holds the runs: the plain-Keras check loads it from elsewhere
    out = transferkit_cli("export", trained.run_dir.name, "--format", "keras", cwd=trained.run_dir.parent)
    assert out.returncode == 0, out.stderr
    x = stripes["test"][0][:4].astype("float32")
    reloaded = keras.saving.load_model(trained.run_dir / "export" / "keras" / "model.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), trained.model.predict(x, verbose=0), atol=1e-5)


def test_int8_export_calibrated_on_the_runs_training_images_with_a_uint8_input(trained, stripes, tmp_path):
    out = transferkit_cli("export", trained.run_dir, "--format", "tflite", "--quantize", "int8", "--uint8-input",
                          "--max-accuracy-drop", "100", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    train = trained.metrics["num_examples"]["train"]
    assert (f"quantized int8, uint8 input, calibrated on {train} images of the train split of recipe 'photos' "
            f"(folder)") in out.stdout
    assert "fully_quantize" not in out.stdout + out.stderr  # the quantizer's own summary line stays quiet
    folder = trained.run_dir / "export" / "tflite-int8"
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["quantization"]["calibration_images"] == train
    assert manifest["measured"]["size_bytes"] < 0.35 * (trained.run_dir / "model.keras").stat().st_size
    x, y = stripes["val"]
    images = _write_folder(tmp_path / "images", x[:4], y[:4])
    out = transferkit_cli("predict", folder, *images, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    labels = [answer["predictions"][0]["label"] for answer in json.loads(out.stdout)]
    expected = trained.model.predict(x[:4].astype("float32"), verbose=0).argmax(axis=1)
    assert sum(label == NAMES[i] for label, i in zip(labels, expected)) >= 3


def test_export_predict_and_evaluate_bad_input_get_one_line(trained, tmp_path):
    out = transferkit_cli("export", trained.run_dir, "--max-accuracy-drop", "lots", cwd=tmp_path)
    assert out.returncode == 2 and "'lots' is not a valid float" in out.stderr and "Traceback" not in out.stderr
    for name in ("bad.onnx", "bad.tflite"):
        (tmp_path / name).write_bytes(b"not a model at all")
        out = transferkit_cli("predict", name, "x.png", cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(f"error: cannot load {name}: ")
