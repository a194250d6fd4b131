"""Export, load/predict, test-time views and evaluation on one tiny trained run.

Each export format is reloaded in a fresh process with its own runtime and compared with the in-memory model;
``load`` and ``evaluate_run`` run every format in its own runtime.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import transferkit
from conftest import tiny_run
from transferkit.data.pipeline import resize
from transferkit.errors import TransferkitError
from transferkit.evaluation import classification_report, evaluate_run
from transferkit.exporters import TOLERANCE, export, plain_keras_answers
from transferkit.layers import LocalResponseNormalization, Preprocess
from transferkit.measure import check_accuracy_drop
from transferkit.predict import TTA_VIEWS, load, read_image, tta_views
from transferkit.standalone import builtin_preprocess, required_imports, standalone_model

NAMES = ["horizontal", "vertical"]
SIZE = 32
FORMATS = ("savedmodel", "keras", "tflite", "onnx")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stripes):
    """A feature-extraction run on the stripes, on the first two VGG16 blocks (small and fast to export)."""
    return tiny_run(tmp_path_factory.mktemp("export"), stripes, epochs=6, class_names=NAMES)


@pytest.fixture(scope="module")
def exported(trained, stripes):
    """Every format exported once, measured on the test stripes (the run was trained on arrays, which its
    recipe cannot re-load)."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    return {fmt: export(trained.run_dir, fmt, data=stripes["test"]) for fmt in FORMATS}


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


def test_every_export_records_its_parity_accuracy_size_and_latency(trained, exported, stripes):
    x, y = stripes["test"]
    accuracy = np.mean(trained.model(x.astype(np.float32), training=False).numpy().argmax(axis=1) == y)
    for fmt, manifest in exported.items():
        folder = Path(manifest["out"])
        written = json.loads((folder / "export.json").read_text())
        assert written["format"] == fmt and written["class_names"] == NAMES and written["image_size"] == SIZE
        assert 0 <= written["parity"]["max_abs_diff"] <= TOLERANCE[fmt] and written["parity"]["sample_images"] == 8
        for name in written["files"]:
            assert (folder / name).read_bytes()[:1]
        measured = written["measured"]
        assert measured["test_images"] == len(y) and measured["data"] == f"{len(y)} images given as arrays"
        assert measured["model_accuracy"] == pytest.approx(accuracy) and measured["accuracy"] == pytest.approx(accuracy)
        assert measured["accuracy_drop_points"] == 0 and measured["top1_agreement"] == 1.0
        assert measured["max_accuracy_drop"] == 1.0
        assert measured["size_bytes"] == sum((folder / name).stat().st_size for name in written["files"])
        assert measured["model_size_bytes"] == (trained.run_dir / "model.keras").stat().st_size
        assert 0 < measured["latency_ms"] < 5000 and 0 < measured["model_latency_ms"] < 5000
        assert measured["runtime"] == load(folder).runtime and measured["model_runtime"].startswith("keras ")
    assert exported["tflite"]["measured"]["runtime"].startswith(("tf.lite.Interpreter", "ai_edge_litert"))
    assert exported["onnx"]["measured"]["runtime"].startswith("onnxruntime ")


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


def test_savedmodel_answers_raw_images_of_another_size_and_jpeg_bytes(trained, exported, images, tmp_path):
    savedmodel = exported["savedmodel"]
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


# Each child predicts a batch of 1 and a batch of 3 (a dynamic batch) and reads the labels from where a user
# without transferkit finds them.
KERAS_CHILD = """
import json, sys
import numpy as np, keras
model = keras.saving.load_model(sys.argv[1] + "/model.keras", safe_mode=True)
images = np.load(sys.argv[2])
print(json.dumps({"probabilities": [model.predict_on_batch(images[:1]).tolist(),
                                    model.predict_on_batch(images[1:4]).tolist()],
                  "class_names": json.load(open(sys.argv[1] + "/labels.json"))["class_names"],
                  "names": [model.inputs[0].name, model.get_layer("preprocess").__class__.__name__],
                  "transferkit_loaded": "transferkit" in sys.modules}))
"""

TFLITE_CHILD = """
import json, sys, warnings
import numpy as np, tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils
warnings.simplefilter("ignore")
images = np.load(sys.argv[2])
interpreter = tf.lite.Interpreter(model_path=sys.argv[1] + "/model.tflite")
runner = interpreter.get_signature_runner("serving_default")
metadata = {m.name.decode(): m.buffer for m in flatbuffer_utils.read_model(sys.argv[1] + "/model.tflite").metadata}
model = flatbuffer_utils.read_model(sys.argv[1] + "/model.tflite")
labels = json.loads(bytes(model.buffers[metadata["labels.json"]].data))
(source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
print(json.dumps({"probabilities": [runner(image=images[:1])["probabilities"].tolist(),
                                    runner(image=images[1:4])["probabilities"].tolist()],
                  "class_names": labels["class_names"], "batch": int(source["shape_signature"][0]),
                  "names": [source["name"], target["name"], interpreter.get_signature_list()["serving_default"]],
                  "transferkit_loaded": "transferkit" in sys.modules}))
"""

ONNX_CHILD = """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1] + "/model.onnx", providers=["CPUExecutionProvider"])
images = np.load(sys.argv[2])
names = json.loads(session.get_modelmeta().custom_metadata_map["class_names"])
(source,), (target,) = session.get_inputs(), session.get_outputs()
print(json.dumps({"probabilities": [session.run(["probabilities"], {"image": images[:1]})[0].tolist(),
                                    session.run(["probabilities"], {"image": images[1:4]})[0].tolist()],
                  "class_names": names, "batch": source.shape[0],
                  "names": [source.name, target.name, target.shape[0]],
                  "transferkit_loaded": "transferkit" in sys.modules,
                  "tensorflow_loaded": "tensorflow" in sys.modules}))
"""

CHILDREN = {
    "keras": (KERAS_CHILD, ["image", "Conv2D"], None),
    "tflite": (TFLITE_CHILD, ["image", "probabilities", {"inputs": ["image"], "outputs": ["probabilities"]}], -1),
    "onnx": (ONNX_CHILD, ["image", "probabilities", "batch"], "batch"),
}


@pytest.mark.parametrize("fmt", sorted(CHILDREN))
def test_fixed_size_formats_stand_alone_with_named_tensors_and_a_dynamic_batch(trained, exported, images,
                                                                                tmp_path, fmt):
    child, names, batch = CHILDREN[fmt]
    x, _, _ = images
    np.save(tmp_path / "images.npy", x.astype(np.float32))  # already at the model's size: float 0-255
    answer = fresh_process(child, exported[fmt]["out"], tmp_path / "images.npy")
    assert not answer["transferkit_loaded"] and not answer.get("tensorflow_loaded")
    assert answer["class_names"] == NAMES and answer["names"] == names and answer.get("batch") == batch
    expected = trained.model(x[:4].astype(np.float32), training=False).numpy()
    one, three = answer["probabilities"]
    assert np.shape(one) == (1, 2) and np.shape(three) == (3, 2)
    np.testing.assert_allclose(np.concatenate([one, three]), expected, atol=TOLERANCE[fmt])


def test_builtin_preprocessing_computes_what_the_transferkit_layer_does():
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 5, 3)).astype(np.float32)
    x[0, 0, 0] = [0, 127.5, 255]
    for mode, kind in (("caffe", "Conv2D"), ("tf", "Rescaling"), ("torch", "Normalization"), ("none", "Identity")):
        layer = builtin_preprocess(mode)
        assert type(layer).__name__ == kind
        np.testing.assert_allclose(np.asarray(layer(x)), Preprocess(mode)(x).numpy(), atol=1e-6, rtol=0)
    caffe = np.asarray(builtin_preprocess("caffe")(x))
    np.testing.assert_array_equal(caffe, Preprocess("caffe")(x).numpy())  # exact: a permutation and a bias
    np.testing.assert_array_equal(caffe[0, 0, 0], np.float32([255, 127.5, 0]) - np.float32([103.939, 116.779, 123.68]))


def test_a_model_with_a_layer_only_transferkit_has_names_the_import_it_needs(tmp_path):
    inputs = keras.Input((8, 8, 3), name="image")
    x = Preprocess("tf", name="preprocess")(inputs)
    x = LocalResponseNormalization()(keras.layers.Conv2D(4, 3)(x))
    body = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    nested = keras.Model(inputs, body(inputs))  # the custom layers one model down, as a baseline's are
    assert required_imports(nested) == ["transferkit.layers"]
    portable = standalone_model(nested)
    assert required_imports(portable) == ["transferkit.layers"]  # LRN stays: no built-in layer computes it
    portable.save(tmp_path / "lrn.keras")
    images = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    answer, imported = plain_keras_answers(tmp_path / "lrn.keras", images, ["transferkit.layers"])
    np.testing.assert_allclose(answer, nested.predict_on_batch(images), atol=1e-5)
    assert "transferkit.layers" in imported
    with pytest.raises(TransferkitError, match="does not load in plain Keras: .*LocalResponseNormalization"):
        plain_keras_answers(tmp_path / "lrn.keras", images)


def test_an_export_that_disagrees_fails_loudly_and_leaves_nothing(trained, stripes, tmp_path, monkeypatch):
    def broken_reload(path, images, imports=()):  # a save/load round trip that lost the head's last bias
        model = keras.saving.load_model(path, safe_mode=True)
        bias = model.get_layer("head").get_layer("predictions").bias
        bias.assign(bias.numpy() + np.array([0.5, -0.5]))
        return model.predict_on_batch(images), []

    monkeypatch.setattr("transferkit.exporters.plain_keras_answers", broken_reload)
    with pytest.raises(TransferkitError, match="keras export disagrees with the in-memory model"):
        export(trained.run_dir, "keras", tmp_path / "out" / "keras", data=stripes["test"])
    assert list((tmp_path / "out").iterdir()) == []


def test_max_accuracy_drop_refuses_an_artifact_that_loses_more_and_leaves_nothing(trained, stripes, tmp_path):
    x, y = stripes["test"]
    wrong = 1 - y[:10]  # ten of the test images mislabelled: the same errors for model and export
    with pytest.raises(TransferkitError, match=r"^the tflite export loses 0\.00 accuracy points on 10 images given "
                                               r"as arrays \(0\.\d{4} -> 0\.\d{4} on 10 images\), more than the -0\.5 "
                                               r"allowed \(--max-accuracy-drop\); nothing was written$"):
        export(trained.run_dir, "tflite", tmp_path / "out" / "tflite", data=(x[:10], wrong), max_accuracy_drop=-0.5)
    assert list((tmp_path / "out").iterdir()) == []
    measured = {"accuracy_drop_points": 1.0, "data": "test split", "model_accuracy": 0.8, "accuracy": 0.79,
                "test_images": 100}
    check_accuracy_drop(measured, 1.0, "tflite")  # exactly the limit passes
    with pytest.raises(TransferkitError, match=r"loses 1\.50 accuracy points on test split \(0\.8000 -> 0\.7850"):
        check_accuracy_drop({**measured, "accuracy_drop_points": 1.5, "accuracy": 0.785}, 1.0, "tflite")


def test_quantized_tflite_exports_are_smaller_and_record_what_they_lose(trained, exported, stripes):
    float_size = exported["tflite"]["measured"]["size_bytes"]
    manifests = {}
    for mode in ("float16", "dynamic", "int8"):
        int8 = mode == "int8"
        manifests[mode] = manifest = export(trained.run_dir, "tflite", quantize=mode, uint8_input=int8,
                                            calibration=stripes["train"][0] if int8 else None,
                                            data=stripes["test"], max_accuracy_drop=100)
        assert manifest["out"] == str(trained.run_dir / "export" / f"tflite-{mode}")
        assert manifest["quantization"]["mode"] == mode and manifest["parity"]["tolerance"] is None
        measured = manifest["measured"]
        hits = round(measured["accuracy"] * measured["test_images"])
        model_hits = round(measured["model_accuracy"] * measured["test_images"])
        assert measured["accuracy_drop_points"] == pytest.approx(100 * (model_hits - hits) / measured["test_images"])
        assert measured["top1_agreement"] >= 0.75
        assert measured["size_bytes"] < (0.6 if mode == "float16" else 0.35) * float_size
        predictor = load(manifest["out"])
        assert predictor.class_names == tuple(NAMES) and predictor.input["shape_signature"][0] == -1
    assert manifests["int8"]["quantization"] == {"mode": "int8", "uint8_input": True, "calibration_images": 96,
                                                 "calibration": "96 images of the array given"}
    assert predictor.input["dtype"] == np.uint8 and predictor.input["quantization"] == (1.0, 0)  # raw pixels
    assert "image uint8 [N, 32, 32, 3]" in manifests["int8"]["interface"]["model.tflite"]
    lost = manifests["int8"]["measured"]["accuracy_drop_points"]  # the same calibration gives the same model
    with pytest.raises(TransferkitError, match=rf"^the tflite int8 export loses {lost:.2f} accuracy points "):
        export(trained.run_dir, "tflite", quantize="int8", uint8_input=True, calibration=stripes["train"][0],
               data=stripes["test"], max_accuracy_drop=lost - 0.5)
    assert json.loads((Path(manifests["int8"]["out"]) / "export.json").read_text()) == {
        key: value for key, value in manifests["int8"].items() if key != "out"}  # the refused one replaced nothing


def test_quantization_options_that_do_not_go_together_are_refused(trained, stripes, tmp_path):
    cases = [({"format": "onnx", "quantize": "int8"}, "--quantize is for --format tflite, not onnx"),
             ({"quantize": "float16", "uint8_input": True}, "are for --quantize int8, not float16"),
             ({"uint8_input": True}, "are for --quantize int8"),
             ({"quantize": "int4"}, "unknown quantization 'int4'"),
             ({"quantize": "int8"}, r"trained on arrays .*: pass calibration images: calibration=FOLDER")]
    for options, message in cases:
        with pytest.raises(TransferkitError, match=message):
            export(trained.run_dir, **{"format": "tflite", **options}, out=tmp_path / "q", data=stripes["test"])
    assert not (tmp_path / "q").exists()


def test_export_refuses_to_overwrite_a_folder_it_did_not_write(trained, stripes, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TransferkitError, match="is not a transferkit export"):
        export(trained.run_dir, "keras", tmp_path / "mine", data=stripes["test"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(TransferkitError, match=r"trained on arrays given in Python.*data=FOLDER"):
        export(trained.run_dir, "keras", tmp_path / "theirs")  # no test split to measure on
    assert not (tmp_path / "theirs").exists()


def test_onnx_without_tf2onnx_says_what_to_install(trained, stripes, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(TransferkitError, match=r"needs tf2onnx and onnxruntime \(pip install"):
        export(trained.run_dir, "onnx", tmp_path / "onnx", data=stripes["test"])
    assert not (tmp_path / "onnx").exists()


def test_load_predicts_paths_pil_images_and_arrays_the_same_from_a_run_and_every_export(trained, exported,
                                                                                        images, tmp_path):
    x, _, other = images
    Image.fromarray(other[0]).save(tmp_path / "a.png")
    inputs = [tmp_path / "a.png", Image.fromarray(other[1]), other[2], other[3] / 255.0, x[4]]
    arrays = [other[0], other[1], other[2], other[3], x[4]]
    expected = in_memory(trained, arrays)
    sources = {"run": (trained.run_dir, 1e-4), **{fmt: (m["out"], TOLERANCE[fmt]) for fmt, m in exported.items()},
               "tflite file": (Path(exported["tflite"]["out"]) / "model.tflite", TOLERANCE["tflite"]),
               "onnx file": (Path(exported["onnx"]["out"]) / "model.onnx", TOLERANCE["onnx"])}
    kinds = set()
    for source, tolerance in sources.values():
        predictor = transferkit.load(source)
        kinds.add(type(predictor).__name__)
        assert predictor.labels == predictor.class_names == tuple(NAMES)
        np.testing.assert_allclose(predictor.predict(inputs), expected, atol=tolerance)
        assert predictor.predict(other[0]).shape == (1, 2)  # one image, not a list
    assert kinds == {"KerasPredictor", "SavedModelPredictor", "TFLitePredictor", "ONNXPredictor"}
    top = predictor.top_k(expected, k=2)
    assert [name for name, _ in top[0]] == [NAMES[i] for i in np.argsort(-expected[0])]
    assert top[0][0][1] == pytest.approx(expected[0].max())


def test_tflite_labels_come_from_inside_the_file(exported, tmp_path):
    import shutil

    alone = tmp_path / "alone.tflite"
    shutil.copy(Path(exported["tflite"]["out"]) / "model.tflite", alone)  # no labels.json beside it
    assert load(alone).class_names == tuple(NAMES)


def test_evaluate_every_export_in_its_own_runtime_like_the_run(trained, exported, stripes, tmp_path):
    x, y = stripes["test"]
    folder = _folder(tmp_path / "photos", x[:24], y[:24])
    run = evaluate_run(trained.run_dir, data=folder, tta=2, flips=True, out=tmp_path / "run")
    for fmt, manifest in exported.items():
        report = evaluate_run(manifest["out"], data=folder, tta=2, flips=True, out=tmp_path / fmt)
        assert report["runtime"] == manifest["measured"]["runtime"]
        assert report["run_dir"] == str(trained.run_dir.resolve())
        assert report["accuracy"] == run["accuracy"] and report["confusion_matrix"] == run["confusion_matrix"]
        assert report["loss"] == pytest.approx(run["loss"], abs=TOLERANCE[fmt])
        assert (tmp_path / fmt / "evaluation.json").is_file()
    with pytest.raises(TransferkitError, match=r"trained on arrays given in Python.*--data FOLDER"):
        evaluate_run(exported["onnx"]["out"])  # its run's split cannot be re-loaded


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


def test_onnx_and_keras_exports_of_a_backbone_with_captured_constants(stripes, tmp_path):
    """EfficientNet's Normalization layer holds its mean and variance as captured constants, which tf2onnx left
    as graph inputs (onnxruntime: "Required inputs ... are missing"); the export freezes them first. The
    backbone preprocesses itself (mode none): its .keras export loads in plain Keras too."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    run = transferkit.run("demo_hed", strategy="feature_extraction", backbone="efficientnet_b0", weights="none",
                          data=stripes, class_names=NAMES, out=tmp_path / "runs", epochs=1, verbose=0,
                          overrides=["head.units=8", "base_blocks=1", "image_size=32"])
    for fmt in ("onnx", "keras"):
        manifest = export(run.run_dir, fmt, tmp_path / fmt, data=stripes["test"])
        assert manifest["parity"]["max_abs_diff"] <= TOLERANCE[fmt]
        assert manifest["measured"]["accuracy"] == manifest["measured"]["model_accuracy"]
    assert manifest["interface"]["requires"] == []
