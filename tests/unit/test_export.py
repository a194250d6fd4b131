"""Export, load/predict, test-time views and evaluation on one tiny trained run.

Each export format is reloaded in a fresh process with its own runtime and compared with the in-memory model.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import transferkit
from transferkit.data.pipeline import resize
from transferkit.errors import TransferkitError
from transferkit.evaluation import classification_report, evaluate_run
from transferkit.exporters import export
from transferkit.predict import TTA_VIEWS, load, read_image, tta_views

NAMES = ["horizontal", "vertical"]
SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stripes):
    """A feature-extraction run on the stripes, on the first two VGG16 blocks (small and fast to export)."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        env.setenv("TRANSFERKIT_OFFLINE", "1")
        return transferkit.run("demo_hed", strategy="feature_extraction", data=stripes, class_names=NAMES,
                               out=root / "runs", overrides=["head.units=16", "batch_size=16", "base_blocks=2", "image_size=32"],
                               epochs=6, verbose=0)


@pytest.fixture(scope="module")
def savedmodel(trained):
    return export(trained.run_dir, "savedmodel")


@pytest.fixture(scope="module")
def images(stripes):
    """Eight test stripes (true labels known) and the same at 45x37 pixels, uint8."""
    x, y = stripes["test"]
    x, y = x[:8], y[:8]
    other = tf.image.resize(x, (45, 37)).numpy().round().astype(np.uint8)
    return x, y, other


def in_memory(trained, raw_images):
    """The trained model's probabilities for uint8 images of any size, resized as in training."""
    resized = np.stack([resize(image, SIZE, "squash").numpy() for image in raw_images])
    return trained.model(resized, training=False).numpy()


def fresh_process(code, *args):
    """Run ``code`` in a new Python process; it prints one JSON document."""
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_manifest(manifest, fmt, tolerance):
    folder = manifest["out"]
    written = json.loads(open(f"{folder}/export.json").read())
    assert written["format"] == fmt and written["class_names"] == NAMES and written["image_size"] == SIZE
    assert 0 <= written["parity"]["max_abs_diff"] <= tolerance and written["parity"]["sample_images"] == 8
    for name in written["files"]:
        assert open(f"{folder}/{name}", "rb").read(1)


SAVEDMODEL_CHILD = """
import json, sys
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
raw = model.signatures["serving_default"](images=tf.constant(np.load(sys.argv[2])))
jpegs = [open(path, "rb").read() for path in sys.argv[3:]]
encoded = model.signatures["serve_encoded"](encoded=tf.constant(jpegs))
meta = model.signatures["metadata"]()
print(json.dumps({"raw": raw["probabilities"].numpy().tolist(),
                  "raw_class": [c.decode() for c in raw["class_name"].numpy()],
                  "jpeg": encoded["probabilities"].numpy().tolist(),
                  "class_names": [c.decode() for c in meta["class_names"].numpy()],
                  "image_size": int(meta["image_size"]), "transferkit_loaded": "transferkit" in sys.modules}))
"""


def test_savedmodel_answers_raw_images_of_another_size_and_jpeg_bytes(trained, savedmodel, images, tmp_path):
    check_manifest(savedmodel, "savedmodel", 1e-4)
    weights = sum(p.stat().st_size for p in (Path(savedmodel["out"]) / "variables").iterdir())
    assert weights < 1.5 * (trained.run_dir / "model.keras").stat().st_size  # every weight stored once
    _, labels, other = images
    np.save(tmp_path / "raw.npy", other)
    jpegs = []
    for i, image in enumerate(other[:4]):
        Image.fromarray(image).save(tmp_path / f"{i}.jpg", quality=85)
        jpegs.append(tmp_path / f"{i}.jpg")
    answer = fresh_process(SAVEDMODEL_CHILD, savedmodel["out"], tmp_path / "raw.npy", *jpegs)
    assert not answer["transferkit_loaded"]  # the artifact stands alone
    assert answer["class_names"] == NAMES and answer["image_size"] == SIZE
    expected = in_memory(trained, other)
    np.testing.assert_allclose(answer["raw"], expected, atol=1e-4)
    assert answer["raw_class"] == [NAMES[i] for i in expected.argmax(axis=1)]
    assert np.mean(expected.argmax(axis=1) == labels) >= 0.75
    decoded = [tf.io.decode_jpeg(path.read_bytes()).numpy() for path in jpegs]
    np.testing.assert_allclose(answer["jpeg"], in_memory(trained, decoded), atol=1e-4)


KERAS_CHILD = """
import json, sys
import numpy as np, keras
import transferkit.layers  # registers Preprocess
model = keras.saving.load_model(sys.argv[1] + "/model.keras", safe_mode=True)
labels = json.load(open(sys.argv[1] + "/labels.json"))
print(json.dumps({"probabilities": model.predict(np.load(sys.argv[2]), verbose=0).tolist(),
                  "class_names": labels["class_names"]}))
"""

TFLITE_CHILD = """
import json, sys, warnings
import numpy as np, tensorflow as tf
warnings.simplefilter("ignore")
images = np.load(sys.argv[2])
interpreter = tf.lite.Interpreter(model_path=sys.argv[1] + "/model.tflite")
(source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
interpreter.resize_tensor_input(source["index"], images.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(source["index"], images)
interpreter.invoke()
labels = json.load(open(sys.argv[1] + "/labels.json"))
print(json.dumps({"probabilities": interpreter.get_tensor(target["index"]).tolist(),
                  "class_names": labels["class_names"]}))
"""

ONNX_CHILD = """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1] + "/model.onnx", providers=["CPUExecutionProvider"])
(probabilities,) = session.run(None, {session.get_inputs()[0].name: np.load(sys.argv[2])})
names = json.loads(session.get_modelmeta().custom_metadata_map["class_names"])
print(json.dumps({"probabilities": probabilities.tolist(), "class_names": names,
                  "tensorflow_loaded": "tensorflow" in sys.modules}))
"""


CHILDREN = {"keras": (KERAS_CHILD, 1e-4), "tflite": (TFLITE_CHILD, 1e-3), "onnx": (ONNX_CHILD, 1e-3)}


@pytest.mark.parametrize("fmt", sorted(CHILDREN))
def test_fixed_size_formats_match_the_in_memory_model_in_a_fresh_process(trained, images, tmp_path, fmt):
    child, tolerance = CHILDREN[fmt]
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    manifest = export(trained.run_dir, fmt, tmp_path / fmt)
    check_manifest(manifest, fmt, tolerance)
    x, _, _ = images
    np.save(tmp_path / "images.npy", x.astype(np.float32))  # already at the model's size: float 0-255
    answer = fresh_process(child, manifest["out"], tmp_path / "images.npy")
    assert answer["class_names"] == NAMES
    np.testing.assert_allclose(answer["probabilities"], trained.model(x.astype(np.float32), training=False).numpy(), atol=tolerance)
    assert not answer.get("tensorflow_loaded")


def test_an_export_that_disagrees_fails_loudly_and_leaves_nothing(trained, tmp_path, monkeypatch):
    import keras

    def broken_reload(path):  # a save/load round trip that lost the head's last bias
        model = keras.saving.load_model(path, safe_mode=True)
        bias = model.get_layer("head").get_layer("predictions").bias
        bias.assign(bias.numpy() + np.array([0.5, -0.5]))
        return model

    monkeypatch.setattr("transferkit.exporters.load_keras_model", broken_reload)
    with pytest.raises(TransferkitError, match="keras export disagrees with the in-memory model"):
        export(trained.run_dir, "keras", tmp_path / "out" / "keras")
    assert list((tmp_path / "out").iterdir()) == []


def test_export_refuses_to_overwrite_a_folder_it_did_not_write(trained, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TransferkitError, match="is not a transferkit export"):
        export(trained.run_dir, "keras", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_onnx_without_tf2onnx_says_what_to_install(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(TransferkitError, match=r"needs tf2onnx and onnxruntime \(pip install"):
        export(trained.run_dir, "onnx", tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_load_predicts_paths_pil_images_and_arrays_the_same_from_a_run_and_a_savedmodel(trained, savedmodel,
                                                                                         images, tmp_path):
    x, _, other = images
    Image.fromarray(other[0]).save(tmp_path / "a.png")
    inputs = [tmp_path / "a.png", Image.fromarray(other[1]), other[2], other[3] / 255.0, x[4]]
    arrays = [other[0], other[1], other[2], other[3], x[4]]
    expected = in_memory(trained, arrays)
    for source in (trained.run_dir, savedmodel["out"]):
        predictor = transferkit.load(source)
        assert predictor.labels == predictor.class_names == tuple(NAMES)
        np.testing.assert_allclose(predictor.predict(inputs), expected, atol=1e-4)
    top = predictor.top_k(expected, k=2)
    assert [name for name, _ in top[0]] == [NAMES[i] for i in np.argsort(-expected[0])]
    assert top[0][0][1] == pytest.approx(expected[0].max())
    assert predictor.predict(other[0]).shape == (1, 2)  # one image, not a list


def test_predict_reads_a_3d_array_as_a_gray_batch_and_top_k_one_vector(trained, images):
    _, _, other = images
    gray = other[..., 0]  # (8, 45, 37): eight gray images
    predictor = load(trained.run_dir)
    probabilities = predictor.predict(gray)
    assert probabilities.shape == (8, 2)
    np.testing.assert_allclose(probabilities, in_memory(trained, [np.repeat(g[..., None], 3, -1) for g in gray]),
                               atol=1e-4)
    assert predictor.top_k(probabilities[0], k=2) == predictor.top_k(probabilities[:1], k=2)  # one vector, one image
    assert predictor.predict(other[0]).shape == predictor.predict(other[0][..., :1]).shape == (1, 2)  # HxWx3, HxWx1
    for shape in [(45, 37, 2), (8, 45, 37, 2), (2, 8, 45, 37, 3)]:
        with pytest.raises(TransferkitError, match=re.escape(f"got shape {shape}")):
            predictor.predict(np.zeros(shape, np.uint8))
    with pytest.raises(TransferkitError, match=re.escape("got shape (45, 37, 2)")):
        read_image(np.zeros((45, 37, 2), np.uint8))


def test_read_image_names_the_unreadable_file(tmp_path):
    (tmp_path / "bad.jpg").write_text("not an image")
    with pytest.raises(TransferkitError, match=r"cannot read .*bad\.jpg: not an image"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(TransferkitError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    assert read_image(np.zeros((5, 7), np.uint8)).shape == (5, 7, 3)
    with pytest.raises(TransferkitError, match="got shape"):
        read_image(np.zeros((1, 2, 5, 7, 3)))
    with pytest.raises(TransferkitError, match="neither a run directory"):
        load(tmp_path)


def test_tta_views_are_a_fixed_list_of_flips_and_crops():
    ramp = np.broadcast_to(np.arange(32, dtype=np.float32)[None, None, :, None], (1, 32, 32, 3)) * 8
    views = [v.numpy() for v in tta_views(ramp, len(TTA_VIEWS))]
    assert len(views) == 12 and all(v.shape == ramp.shape for v in views)
    np.testing.assert_array_equal(views[0], ramp)
    np.testing.assert_array_equal(views[1], ramp[:, :, ::-1])
    center, top_left, top_right = views[TTA_VIEWS.index("center")], views[3], views[4]
    assert top_left.mean() < center.mean() < top_right.mean()  # crops of 28 of 32 columns, resized back
    assert top_left.max() == pytest.approx(27 * 8, abs=1e-3) and top_right.min() == pytest.approx(4 * 8, abs=1e-3)
    np.testing.assert_allclose(views[TTA_VIEWS.index("flip_center")], center[:, :, ::-1])
    np.testing.assert_array_equal(tta_views(ramp, 3)[2].numpy(), center)  # deterministic
    for n in (0, 13):
        with pytest.raises(TransferkitError, match="1 to 12 views"):
            tta_views(ramp, n)
    unflipped = [v.numpy() for v in tta_views(ramp, 6, flips=False)]
    np.testing.assert_array_equal(unflipped[1], center)  # no flipped view for a model trained without flips
    assert all(v[0, 0, -1, 0] > v[0, 0, 0, 0] for v in unflipped)
    with pytest.raises(TransferkitError, match="1 to 6 views without flips"):
        tta_views(ramp, 7, flips=False)


def test_classification_report_counts_by_hand():
    probabilities = np.array([[.9, .1, 0], [.8, .2, 0], [.3, .7, 0], [.1, .2, .7], [.6, .3, .1]])
    report = classification_report([0, 1, 1, 2, 1], probabilities, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 0, 0], [2, 1, 0], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_class"]["a"] == {"precision": pytest.approx(1 / 3), "recall": 1.0, "support": 1}
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": pytest.approx(1 / 3), "support": 3}
    empty = classification_report([0, 0], np.array([[.9, .1, 0], [.8, .2, 0]]), ["a", "b", "c"])["per_class"]
    assert empty["b"] == {"precision": None, "recall": None, "support": 0}


def _folder(root, images, labels, names=NAMES):
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / names[label] / f"{i}.png")
    return root


def test_evaluate_a_folder_with_and_without_test_time_augmentation(trained, stripes, tmp_path):
    x, y = stripes["test"]
    folder = _folder(tmp_path / "photos", x, y)
    with pytest.raises(TransferkitError, match=r"trained on arrays given in Python, which its recipe cannot re-load: pass .*data=FOLDER.*--data FOLDER"):
        evaluate_run(trained.run_dir)
    plain = evaluate_run(trained.run_dir, data=folder, out=tmp_path / "plain")
    expected = in_memory(trained, x).argmax(axis=1)
    assert plain["accuracy"] == pytest.approx(np.mean(expected == y)) and plain["num_examples"] == len(y)
    matrix = np.array(plain["confusion_matrix"])
    assert matrix.sum() == len(y) and matrix[1, 1] == np.sum((expected == 1) & (y == 1))
    assert plain["per_class"]["vertical"]["recall"] == pytest.approx(matrix[1, 1] / matrix[1].sum())
    assert (tmp_path / "plain" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "plain" / "evaluation.json").read_text())["accuracy"] == plain["accuracy"]

    flipped = evaluate_run(trained.run_dir, data=folder, tta=2, out=tmp_path / "tta", flips=True)
    predictor = load(trained.run_dir)
    resized = np.stack([resize(image, SIZE, "squash").numpy() for image in x])
    both = (in_memory(trained, resized) + in_memory(trained, resized[:, :, ::-1])) / 2
    assert flipped["views"] == ["original", "flip"]
    assert flipped["loss"] == pytest.approx(classification_report(y, both, NAMES)["loss"], abs=1e-5)
    np.testing.assert_allclose(predictor.predict_resized(resized, tta=2), both, atol=1e-5)


def test_evaluate_refuses_a_folder_with_classes_the_model_does_not_know(trained, stripes, tmp_path):
    folder = _folder(tmp_path / "photos", stripes["test"][0][:4], [0, 1, 2, 2], NAMES + ["diagonal"])
    with pytest.raises(TransferkitError, match="does not know: diagonal"):
        evaluate_run(trained.run_dir, data=folder)


def test_evaluate_notices_a_recipe_whose_data_are_not_what_the_run_saw(trained, tmp_path):
    import shutil

    copy = shutil.copytree(trained.run_dir, tmp_path / "run")
    recipe = (copy / "recipe.yaml").read_text()
    (copy / "recipe.yaml").write_text(recipe.replace("source: arrays", "source: sample"))  # 10 classes, not 2
    with pytest.raises(TransferkitError, match=r"not the data it was trained on .*: pass .*data=FOLDER.*--data FOLDER"):
        evaluate_run(copy)


def test_onnx_export_of_a_backbone_with_captured_constants(stripes, tmp_path):
    """EfficientNet's Normalization layer holds its mean and variance as captured constants, which tf2onnx left
    as graph inputs (onnxruntime: "Required inputs ... are missing"); the export freezes them first."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    run = transferkit.run("demo_hed", strategy="feature_extraction", backbone="efficientnet_b0", weights="none",
                          data=stripes, class_names=NAMES, out=tmp_path / "runs", epochs=1, verbose=0,
                          overrides=["head.units=8", "base_blocks=1", "image_size=32"])
    manifest = export(run.run_dir, "onnx", tmp_path / "onnx")
    check_manifest(manifest, "onnx", 1e-3)
