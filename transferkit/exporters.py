"""Export a run's model as a SavedModel, ``.keras``, TFLite or ONNX artifact that checks itself.

Every export is written to a staging folder, reloaded with its own runtime and compared with the
in-memory model on sample images, then measured on the run's test split (accuracy next to the in-memory
model's, size, latency per image); only an artifact within tolerance and within ``max_accuracy_drop``
replaces ``out``, with an ``export.json`` manifest (format, files, class names, image size, the run's
temperature and rejection threshold, the measured difference and the measurements).

(Named ``exporters``, not ``export``: a ``transferkit.export`` submodule, once imported, would hide the
:func:`export` function that ``import transferkit`` offers as ``transferkit.export``.)

Example:
    >>> manifest = transferkit.export("runs/demo-finetune-20261123-171500", "savedmodel")
    >>> manifest["parity"]["max_abs_diff"] <= 1e-4
    True
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from transferkit.console import native_stderr_silenced
from transferkit.data.pipeline import resize
from transferkit.errors import TransferkitError
from transferkit.evaluation import evaluation_data
from transferkit.measure import check_accuracy_drop, measure_export
from transferkit.predict import NOT_STORED, KerasPredictor, ONNXPredictor, TFLitePredictor, load
from transferkit.quantize import configure, quantization_for
from transferkit.registry import Registry
from transferkit.runs import save_model, write_atomic, write_json
from transferkit.standalone import required_imports, standalone_model
from transferkit.tflite_file import LABELS_ENTRY, with_labels

FORMATS = Registry("export format")
TOLERANCE = {"savedmodel": 1e-4, "keras": 1e-4, "tflite": 1e-3, "onnx": 1e-3}


class ServingModule(tf.Module):
    """The model behind serving signatures that resize and preprocess inside, with dropout off.

    ``serve_images`` takes a batch of raw ``uint8`` RGB images of any (one) size, ``serve_encoded`` a batch
    of JPEG/PNG/BMP/GIF bytes; both resize like training (``data.resize``) and return ``probabilities``
    and ``class_name``. ``serve_resized`` takes float32 images (0-255) already at ``image_size`` and
    returns ``probabilities`` (the TFLite and ONNX graphs). ``metadata`` returns the class names,
    image size and resize mode, which travel inside the artifact as variables. ``calibration`` (the run's
    temperature, already in the weights, and rejection threshold) goes into ``labels.json``.

    Example:
        >>> module = ServingModule(model, ["cat", "dog"], 150, "squash")
        >>> module.serve_images(tf.zeros((1, 300, 200, 3), tf.uint8))["class_name"]
    """

    def __init__(self, model, class_names, image_size, resize_mode, calibration=NOT_STORED):
        super().__init__(name="transferkit_classifier")
        self.model = model
        self.calibration = dict(calibration)
        self.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
        self.image_size = tf.Variable(image_size, trainable=False, dtype=tf.int32, name="image_size")
        self.resize_mode = tf.Variable(resize_mode, trainable=False, name="resize")
        self.names, self.size, self.mode = tuple(class_names), image_size, resize_mode
        self.input_note = f"float32 [N, {image_size}, {image_size}, 3], RGB 0-255, resized with '{resize_mode}'"
        self.serve_resized = tf.function(
            self._probabilities, input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32,
                                                                name="image")])

    def _probabilities(self, image):
        return {"probabilities": self.model(image, training=False)}

    def _classify(self, images):
        probabilities = self.model(images, training=False)
        return {"probabilities": probabilities,
                "class_name": tf.gather(self.class_names, tf.argmax(probabilities, axis=-1))}

    def _resize(self, image):
        return resize(image, self.size, self.mode)

    def _decode(self, data):
        return self._resize(tf.io.decode_image(data, channels=3, expand_animations=False))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_images(self, images):
        return self._classify(tf.map_fn(self._resize, images, fn_output_signature=tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
    def serve_encoded(self, encoded):
        return self._classify(tf.map_fn(self._decode, encoded, fn_output_signature=tf.float32))

    @tf.function(input_signature=[])
    def metadata(self):
        return {"class_names": tf.identity(self.class_names), "image_size": tf.identity(self.image_size),
                "resize": tf.identity(self.resize_mode)}


@dataclass
class Samples:
    """Sample images and the in-memory model's answers, for the parity check.

    ``raw``: uint8 images (N, H, W, 3) of a size other than the model's; ``encoded``: the same as PNG then
    JPEG bytes; ``resized``: ``raw`` resized as in training; ``expected``/``expected_encoded``: the
    in-memory model's probabilities for ``raw``/``encoded``.
    """

    raw: np.ndarray
    encoded: list
    resized: np.ndarray
    expected: np.ndarray
    expected_encoded: np.ndarray


def make_samples(predictor, count=8):
    """Deterministic sample images and the predictor's answers to them.

    Half are smooth colour fields, half colour gratings at random angles and periods (a model's answers
    to edges vary more than to blobs), all with noise, at image_size + (7, 3) pixels.
    """
    rng = np.random.default_rng(0)
    height, width = predictor.image_size + 7, predictor.image_size + 3
    fields = tf.image.resize(rng.uniform(0, 255, (count, 3, 3, 3)), (height, width)).numpy()
    y, x = np.mgrid[:height, :width]
    angles, periods = rng.uniform(0, np.pi, count), rng.uniform(3, 12, count)
    waves = np.stack([np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / p) for a, p in zip(angles, periods)])
    gratings = 128 + waves[..., np.newaxis] * rng.uniform(40, 120, (count, 1, 1, 3))
    images = np.where(np.arange(count)[:, None, None, None] % 2 == 0, fields, gratings)
    raw = np.clip(images + rng.normal(0, 20, images.shape), 0, 255).astype(np.uint8)
    encoded = [tf.io.encode_png(image).numpy() for image in raw[: count // 2]]
    encoded += [tf.io.encode_jpeg(image, quality=90).numpy() for image in raw[count // 2:]]
    resized = np.stack([resize(image, predictor.image_size, predictor.resize).numpy() for image in raw])
    decoded = [tf.io.decode_image(data, channels=3).numpy() for data in encoded]
    return Samples(raw, encoded, resized, predictor.predict_resized(resized), predictor.predict(decoded))


def _diff(actual, expected):
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))


def _labels(module, **extra):
    return {"class_names": list(module.names), "image_size": module.size, "resize": module.mode,
            "input": module.input_note, **module.calibration, **extra}


@FORMATS.register("savedmodel")
def export_savedmodel(module, folder, samples):
    """A SavedModel with the signatures of :class:`ServingModule`; reloaded with ``tf.saved_model.load``."""
    signatures = {"serving_default": module.serve_images, "serve_encoded": module.serve_encoded,
                  "serve_resized": module.serve_resized, "metadata": module.metadata}
    tf.saved_model.save(module, str(folder), signatures=signatures)
    loaded = tf.saved_model.load(str(folder)).signatures
    names = [name.decode() for name in loaded["metadata"]()["class_names"].numpy()]
    raw = loaded["serving_default"](images=tf.constant(samples.raw))
    encoded = loaded["serve_encoded"](encoded=tf.constant(samples.encoded))
    for answer in (raw, encoded):
        predicted = [names[i] for i in answer["probabilities"].numpy().argmax(axis=1)]
        if [name.decode() for name in answer["class_name"].numpy()] != predicted:
            raise TransferkitError("the SavedModel's class_name output disagrees with its probabilities")
    diff = max(_diff(raw["probabilities"], samples.expected),
               _diff(encoded["probabilities"], samples.expected_encoded))
    return diff, {
        "serving_default": "images: uint8 [N, H, W, 3], any size -> probabilities [N, C], class_name [N]",
        "serve_encoded": "encoded: string [N] (JPEG, PNG, BMP or GIF bytes) -> probabilities, class_name",
        "serve_resized": f"image: float32 [N, {module.size}, {module.size}, 3], 0-255 -> probabilities",
        "metadata": "-> class_names [C], image_size, resize",
    }


# Loads a .keras file in a process that imports only Keras (and the modules named in argv[3]), predicts the
# images of argv[2] and prints the probabilities and the transferkit modules it ended up importing.
PLAIN_KERAS_CHILD = """
import json, sys
import numpy as np, keras
for name in json.loads(sys.argv[3]):
    __import__(name)
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
print(json.dumps({"probabilities": np.asarray(model.predict_on_batch(np.load(sys.argv[2])), np.float64).tolist(),
                  "transferkit": sorted(m for m in sys.modules if m.split(".")[0] == "transferkit")}))
"""


def plain_keras_answers(path, images, imports=()):
    """The probabilities a fresh Python process gives for ``images`` with ``keras.saving.load_model(path,
    safe_mode=True)``, having imported nothing but Keras and ``imports``; and the transferkit modules that
    process imported (none unless ``imports`` named one).

    Example:
        >>> probabilities, imported = plain_keras_answers("export/keras/model.keras", batch)
        >>> imported
        []
    """
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch) / "images.npy", np.asarray(images, np.float32))
        done = subprocess.run([sys.executable, "-c", PLAIN_KERAS_CHILD, str(Path(path).resolve()),
                               str(Path(scratch) / "images.npy"),
                               json.dumps(list(imports))], capture_output=True, text=True, cwd=scratch,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise TransferkitError(f"the .keras export does not load in plain Keras: {last[:300]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return np.asarray(answer["probabilities"]), answer["transferkit"]


@FORMATS.register("keras")
def export_keras(module, folder, samples):
    """``model.keras`` of built-in Keras layers (float32 RGB 0-255 at image_size, uncompiled) and
    ``labels.json``; reloaded with ``safe_mode`` in a fresh process that imports only Keras (and, for a model
    with a layer only transferkit has, the module that ``requires`` names)."""
    model = standalone_model(module.model)
    imports = required_imports(model)
    save_model(model, folder / "model.keras")
    write_json(folder / "labels.json", _labels(module, requires=imports))
    answered, imported = plain_keras_answers(folder / "model.keras", samples.resized, imports)
    if imported and not imports:
        raise TransferkitError(f"the .keras export imported {', '.join(imported)} when loaded in plain Keras")
    return _diff(answered, samples.expected), {
        "model.keras": module.input_note,
        "load": "; ".join([f"import {name}" for name in imports] + ["keras.saving.load_model(path, safe_mode=True)"]),
        "requires": imports,
    }


@FORMATS.register("tflite")
def export_tflite(module, folder, samples, quantization=None):
    """``model.tflite`` from ``serve_resized``: signature ``serving_default``, ``image`` (float32 RGB 0-255
    [N, S, S, 3], N resizable; uint8 with a uint8 input) -> ``probabilities``, the labels in its metadata (and
    ``labels.json``); quantized as ``quantization`` (a :class:`~transferkit.quantize.Quantization`) says."""
    # The converter finds the weights only as plain tf.Variables, not behind Keras 3's variable wrappers (it
    # writes a model without weights); tracking both in the SavedModel would store every weight twice.
    weights = tf.Module()
    weights.variables_ = [variable.value for variable in module.model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.serve_resized.get_concrete_function()],
                                                                weights)
    note = module.input_note
    if quantization:
        configure(converter, quantization)
        note = note.replace("float32", "uint8", 1) if quantization.uint8_input else note
    labels = _labels(module, input=note)
    with native_stderr_silenced():  # the quantizer says "fully_quantize: 0, inference_type: 6, ..."
        data = converter.convert()
    write_atomic(folder / "model.tflite", with_labels(data, labels))
    write_json(folder / "labels.json", labels)
    reloaded = TFLitePredictor(folder / "model.tflite")
    names = (reloaded.input_name, reloaded.output_name)
    if reloaded.class_names != module.names or names != ("image", "probabilities"):
        raise TransferkitError("the TFLite file lost its labels or its signature's names")
    return _diff(reloaded.run_resized(samples.resized), samples.expected), {
        "model.tflite": f"signature serving_default: image {note} -> probabilities [N, C]; "
                        f"labels in the metadata entry '{LABELS_ENTRY}'"}


@FORMATS.register("onnx")
def export_onnx(module, folder, samples):
    """``model.onnx`` (tf2onnx, opset 17) from ``serve_resized``, class names in its metadata and
    ``labels.json``; reloaded with onnxruntime."""
    try:  # onnxruntime's absence is ONNXPredictor's to say
        import onnx
        import tf2onnx
    except ImportError as err:
        raise TransferkitError(f"--format onnx needs tf2onnx and onnxruntime (pip install "
                               f"'transferkit[onnx]'): {err}") from err
    tf2onnx.logging.set_level(tf2onnx.logging.ERROR)
    # frozen first: tf2onnx's own freezing leaves constants a layer captured (EfficientNet's Normalization mean
    # and variance) as graph inputs the ONNX model then demands
    frozen = convert_variables_to_constants_v2(
        module.serve_resized.get_concrete_function(*module.serve_resized.input_signature))
    try:
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs], opset=17)
    except Exception as err:  # noqa: BLE001  (tf2onnx fails with anything; say it in one line)
        raise TransferkitError(f"tf2onnx could not convert the model: {str(err).splitlines()[0][:300]}") from err
    onnx.helper.set_model_props(proto, {"class_names": json.dumps(list(module.names)),
                                        "image_size": str(module.size), "resize": module.mode})
    _name_io(proto.graph)
    onnx.checker.check_model(proto)
    write_atomic(folder / "model.onnx", proto.SerializeToString())
    write_json(folder / "labels.json", _labels(module))
    reloaded = ONNXPredictor(folder / "model.onnx")
    if reloaded.class_names != module.names:
        raise TransferkitError("the ONNX model lost its class names")
    return _diff(reloaded.run_resized(samples.resized), samples.expected), {
        "model.onnx": f"image: {module.input_note}, batch dimension 'batch' -> probabilities [batch, C]; "
                      f"class_names (JSON), image_size and resize in the metadata"}


def _name_io(graph):
    """Rename the graph's one input ``image`` and one output ``probabilities`` (tf2onnx keeps TensorFlow's
    ``image:0`` and ``Identity:0``) and call their first dimension ``batch``."""
    names = {graph.input[0].name: "image", graph.output[0].name: "probabilities"}
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    for value in list(graph.input) + list(graph.output):
        value.name = names[value.name]
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def _staging(out):
    if out.exists() and not (out / "export.json").is_file() and any(out.iterdir()):
        raise TransferkitError(f"{out} exists and is not a transferkit export; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))


def _publish(staging, out):
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{out.name}-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        os.replace(staging, out)


def export(run_dir, format="savedmodel", out=None, *, data=None, max_accuracy_drop=1.0, quantize=None,
           uint8_input=False, calibration=None):
    """Export the model of ``run_dir`` to ``out`` (default ``run_dir/export/<format>``, or
    ``tflite-<quantize>``), check and measure it.

    Formats: ``savedmodel`` (raw images of any size, or encoded bytes, in; labels inside), ``keras`` (built-in
    layers only), ``tflite`` and ``onnx`` (float32 RGB 0-255 at image size in, labels inside). The artifact
    is reloaded in its own runtime and its predictions compared with the in-memory model's on sample images
    (max abs diff 1e-4; TFLite and ONNX 1e-3; not for a quantized model); then its accuracy on the run's test
    split (or ``data``: a folder of class subfolders, or ``(images, labels)`` arrays), size and latency are
    measured next to the in-memory model's. A larger difference, or more than ``max_accuracy_drop`` accuracy
    points lost, raises :class:`TransferkitError` and leaves ``out`` untouched.

    ``quantize`` (tflite only): ``float16``, ``dynamic`` or ``int8``; int8 is calibrated on the run's training
    images (or ``calibration``: a folder or an array of images) and takes uint8 input with ``uint8_input``.

    Returns the manifest written to ``out/export.json``.

    Example:
        >>> manifest = export("runs/demo-finetune-20261123-171500", "tflite")
        >>> manifest["files"], manifest["measured"]["accuracy_drop_points"]
        (['labels.json', 'model.tflite'], 0.0)
        >>> export("runs/demo-finetune-20261123-171500", "tflite", quantize="int8")["out"]
        'runs/demo-finetune-20261123-171500/export/tflite-int8'
    """
    exporter = FORMATS.get_or_raise(format)
    run_dir = Path(run_dir)
    predictor = load(run_dir)
    if not isinstance(predictor, KerasPredictor) or not (run_dir / "recipe.yaml").is_file():
        raise TransferkitError(f"{run_dir} is not a run directory; export from the run directory")
    if quantize and format != "tflite":
        raise TransferkitError(f"--quantize is for --format tflite, not {format}")
    quantization = quantization_for(quantize, uint8_input, calibration, run_dir, predictor)
    dataset, described = evaluation_data(run_dir, data, predictor.class_names)
    out = Path(out) if out else run_dir / "export" / (f"{format}-{quantize}" if quantize else format)
    tolerance = None if quantization else TOLERANCE[format]
    staging = _staging(out)
    try:
        module = ServingModule(predictor.model, predictor.class_names, predictor.image_size, predictor.resize,
                               predictor.calibration)
        samples = make_samples(predictor)
        diff, interface = exporter(module, staging, samples, **({"quantization": quantization} if quantize else {}))
        if tolerance is not None and not diff <= tolerance:
            raise TransferkitError(f"the {format} export disagrees with the in-memory model: max abs difference "
                                   f"{diff:.3g} > {tolerance:g} on {len(samples.raw)} sample images")
        measured = measure_export(predictor, load(staging), dataset, described, staging)
        check_accuracy_drop(measured, max_accuracy_drop, format + (f" {quantize}" if quantize else ""))
        manifest = {
            "format": format,
            "files": sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()),
            "class_names": list(predictor.class_names),
            "image_size": predictor.image_size,
            "resize": predictor.resize,
            **predictor.calibration,
            "interface": interface,
            **({"quantization": quantization.manifest()} if quantization else {}),
            "parity": {"max_abs_diff": diff, "tolerance": tolerance, "sample_images": len(samples.raw)},
            "measured": {**measured, "max_accuracy_drop": max_accuracy_drop},
            "run_dir": str(run_dir.resolve()),
        }
        write_json(staging / "export.json", manifest)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**manifest, "out": str(out)}
