"""Predict with a trained model: ``load`` a run directory or an export of any format, give it images of any size.

Images are read as RGB ``uint8`` (files decoded like the training pipeline does, with
``tf.io.decode_image``), resized with the recipe's ``data.resize`` mode, and classified. Test-time
augmentation (:func:`tta_views`) averages the model over a fixed list of views.

Example:
    >>> predictor = transferkit.load("runs/demo-finetune-20261123-171500")
    >>> probabilities = predictor.predict(["shoe.jpg", np.zeros((28, 28), np.uint8)])
    >>> predictor.top_k(probabilities, k=2)[0]
    [('sneaker', 0.91), ('sandal', 0.07)]
"""
import contextlib
import io
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import transferkit.layers  # noqa: F401  (registers the layers saved models hold, for loading)
from transferkit.calibration import accepted
from transferkit.console import native_stderr_silenced
from transferkit.data.images import IMAGE_SUFFIXES, check_bytes, pil_rgb
from transferkit.data.pipeline import resize
from transferkit.data.sources import rgb_uint8
from transferkit.errors import TransferkitError
from transferkit.recipes import load_recipe

CROP_FRACTION = 0.875
UNKNOWN = "unknown"  # the answer below the rejection threshold
NOT_STORED = {"temperature": None, "reject_threshold": None}
TTA_VIEWS = ("original", "flip", "center", "top_left", "top_right", "bottom_left", "bottom_right",
             "flip_center", "flip_top_left", "flip_top_right", "flip_bottom_left", "flip_bottom_right")


def image_files(paths):
    """``paths`` with every folder among them replaced by the image files inside it (recursively, sorted);
    a folder without images is an error.

    Example:
        >>> image_files(["cat.png", "more/"])
        ['cat.png', 'more/a.jpg', 'more/b/c.png']
    """
    found = []
    for path in map(str, paths):
        if not Path(path).is_dir():
            found.append(path)
            continue
        inside = sorted(str(f) for f in Path(path).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not inside:
            raise TransferkitError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        found += inside
    return found


def decode_image(data, name="image bytes"):
    """The bytes of an image file (JPEG, PNG, BMP, GIF, WebP, TIFF...) as an RGB ``uint8`` array (H, W, 3),
    checked and decoded as the training pipeline does; bytes that are no image raise a one-line
    :class:`TransferkitError` naming them ``name``.

    Example:
        >>> decode_image(Path("cat.png").read_bytes()).shape
        (375, 500, 3)
    """
    checked = check_bytes(data, name)  # the training pipeline's own check and decoder choice
    if checked.error:
        raise TransferkitError(f"cannot read {name}: {checked.error}")
    if checked.via_pil:
        return pil_rgb(io.BytesIO(data))
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()  # as decode_file does


def read_image(image):
    """One image as an RGB ``uint8`` array (H, W, 3): from a file path, a file's bytes, a PIL image or an array.

    Arrays may be (H, W) gray or (H, W, 1|3|4), uint8 (0-255) or float (0-1 or 0-255).
    An unreadable file raises a one-line :class:`TransferkitError` naming it.

    Example:
        >>> read_image("cat.png").shape
        (375, 500, 3)
    """
    if isinstance(image, (str, Path)):
        try:
            data = Path(image).read_bytes()
        except OSError as err:
            raise TransferkitError(f"cannot read {image}: {err.strerror or err}") from err
        return decode_image(data, str(image))
    if isinstance(image, bytes):
        return decode_image(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4))):
        raise TransferkitError(f"an image array must be (H, W) or (H, W, 1|3|4); got shape {array.shape}")
    return rgb_uint8(array[np.newaxis])[0]


def _as_list(images):
    """``images`` as a list of single images.

    An array is one image if it is (H, W) or (H, W, C) with C <= 4 (channels), a batch if it is (N, H, W)
    (gray images W > 4 pixels wide) or (N, H, W, 1|3|4).
    """
    if isinstance(images, (str, Path, bytes, Image.Image)):
        return [images]
    if not isinstance(images, np.ndarray):
        return list(images)
    if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] <= 4):
        return [images]
    if images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3, 4)):
        return list(images)
    raise TransferkitError(f"image arrays must be one image (H, W) or (H, W, 1|3|4), or a batch (N, H, W) or "
                           f"(N, H, W, 1|3|4); got shape {images.shape}")


def view_names(n=1, flips=True):
    """The names of the first ``n`` test-time views; without ``flips``, the flipped ones are left out.

    Example:
        >>> view_names(3, flips=False)
        ('original', 'center', 'top_left')
    """
    names = TTA_VIEWS if flips else tuple(v for v in TTA_VIEWS if not v.startswith("flip"))
    if not 1 <= n <= len(names):
        raise TransferkitError(f"tta takes 1 to {len(names)} views{'' if flips else ' without flips'}; got {n}")
    return names[:n]


def tta_views(images, n=1, flips=True):
    """The first ``n`` test-time views of a batch of resized images (float, N x S x S x 3).

    Views, in order (:data:`TTA_VIEWS`): the original, its horizontal flip, then crops of
    :data:`CROP_FRACTION` (87.5 %) of the height and width at the centre and the four corners,
    resized back to S x S, then the same five crops flipped. Deterministic; at most 12, or 6 without
    ``flips`` (for a model that never saw flipped images in training).

    Example:
        >>> [v.shape for v in tta_views(np.zeros((2, 32, 32, 3)), 3)]
        [TensorShape([2, 32, 32, 3]), TensorShape([2, 32, 32, 3]), TensorShape([2, 32, 32, 3])]
    """
    names = view_names(n, flips)
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    crop_h, crop_w = round(height * CROP_FRACTION), round(width * CROP_FRACTION)
    offsets = {"center": ((height - crop_h) // 2, (width - crop_w) // 2), "top_left": (0, 0),
               "top_right": (0, width - crop_w), "bottom_left": (height - crop_h, 0),
               "bottom_right": (height - crop_h, width - crop_w)}
    views = []
    for name in names:
        where = name.removeprefix("flip").strip("_")
        view = images
        if where in offsets:
            top, left = offsets[where]
            view = tf.image.resize(images[:, top:top + crop_h, left:left + crop_w], (height, width))
        views.append(tf.image.flip_left_right(view) if name.startswith("flip") else view)
    return views


class Predictor:
    """A classifier that takes images of any size: ``predict`` gives probabilities, ``class_names`` the labels.

    Made by :func:`load`; :class:`KerasPredictor` runs a ``model.keras``, :class:`SavedModelPredictor`
    a SavedModel export, :class:`TFLitePredictor` and :class:`ONNXPredictor` those exports, each in its own
    runtime (named by ``runtime``).

    Example:
        >>> predictor = transferkit.load("runs/demo-finetune-20261123-171500/export/savedmodel")
        >>> predictor.class_names[predictor.predict("boot.png").argmax()]
        'ankle_boot'
    """

    def __init__(self, path, class_names, image_size, resize_mode):
        self.path = Path(path)
        self.class_names = tuple(class_names)
        self.image_size = int(image_size)
        self.resize = resize_mode
        self.calibration = dict(NOT_STORED)  # what load() finds stored: see stored_calibration

    @property
    def labels(self):
        """The class names, indexed like the probabilities' columns."""
        return self.class_names

    def predict(self, images, batch_size=32):
        """Probabilities (N, classes) for images: paths, files' bytes, PIL images or arrays of any size (a list,
        or one).

        An array (H, W) or (H, W, 1|3|4) is one image; (N, H, W, 1|3|4) is a batch, and so is (N, H, W) when
        its last axis is more than 4 long (too long for channels): N gray images.

        Example:
            >>> predictor.predict(["a.jpg", "b.png"]).shape
            (2, 10)
        """
        arrays = [read_image(image) for image in _as_list(images)]
        if not arrays:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._predict(arrays, batch_size)

    def top_k(self, probabilities, k=1):
        """The ``k`` most likely ``(class name, probability)`` pairs of each row of ``probabilities``
        (N, classes); one vector (classes,) counts as one row.

        Example:
            >>> predictor.top_k(predictor.predict("boot.png"), k=2)
            [[('ankle_boot', 0.97), ('sneaker', 0.02)]]
        """
        probabilities = np.atleast_2d(probabilities)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[i], float(row[i])) for i in top] for row, top in zip(probabilities, order)]

    def threshold(self, value=None):
        """The rejection threshold: ``value``, or else the one stored with the model (chosen on its run's
        validation split to keep 95% of the right answers); a one-line error if neither.

        Example:
            >>> predictor.threshold(), predictor.threshold(0.9)
            (0.6132, 0.9)
        """
        if value is None:
            value = self.calibration["reject_threshold"]
        if value is None:
            raise TransferkitError(f"{self.path} stores no rejection threshold (a run from before calibration, or "
                                   f"no correct validation answer): pass one, e.g. --reject 0.8 (threshold=0.8)")
        return float(value)

    def answers(self, probabilities, threshold=None):
        """The top class name of each row of ``probabilities``, or ``"unknown"`` where its probability is below
        ``threshold`` (given, or the stored one: :meth:`threshold`).

        Example:
            >>> predictor.answers(predictor.predict(["boot.png", "noise.png"]))
            ['ankle_boot', 'unknown']
        """
        probabilities = np.atleast_2d(probabilities)
        known = accepted(probabilities, self.threshold(threshold))
        return [self.class_names[i] if ok else UNKNOWN for i, ok in zip(probabilities.argmax(axis=1), known)]

    def predict_resized(self, images, tta=1, flips=True):
        """Probabilities for one batch of images already resized to ``image_size`` (float, RGB 0-255),
        averaged over ``tta`` views.

        Example:
            >>> predictor.predict_resized(batch, tta=6).shape
            (32, 10)
        """
        views = tta_views(images, tta, flips)
        return np.mean([self.run_resized(np.asarray(view, np.float32)) for view in views], axis=0)

    def _predict(self, arrays, batch_size):
        resized = np.stack([resize(array, self.image_size, self.resize).numpy() for array in arrays])
        return np.concatenate([self.predict_resized(resized[i:i + batch_size])
                               for i in range(0, len(resized), batch_size)])

    def run_resized(self, batch):
        """Probabilities (N, classes) from the format's own runtime, once, for a float32 numpy batch
        (N, image_size, image_size, 3) on the 0-255 scale: no views, no conversions.

        Example:
            >>> predictor.run_resized(np.zeros((1, 32, 32, 3), np.float32)).shape
            (1, 2)
        """
        raise NotImplementedError


class KerasPredictor(Predictor):
    """A ``model.keras`` (a run directory or a Keras export), resized here like the training pipeline does."""

    runtime = f"keras {keras.__version__}"

    def __init__(self, path, model, class_names, image_size, resize_mode):
        super().__init__(path, class_names, image_size, resize_mode)
        self.model = model

    def run_resized(self, batch):
        return np.asarray(self.model.predict_on_batch(batch))


class SavedModelPredictor(Predictor):
    """A SavedModel export: raw ``uint8`` images go to its ``serving_default`` signature, which resizes;
    resized ones to ``serve_resized``."""

    runtime = f"tensorflow {tf.__version__} (tf.saved_model.load)"

    def __init__(self, path):
        self.saved = tf.saved_model.load(str(path))
        meta = {key: value.numpy() for key, value in self.saved.signatures["metadata"]().items()}
        super().__init__(path, [name.decode() for name in meta["class_names"]], meta["image_size"],
                         meta["resize"].decode())

    def run_resized(self, batch):
        return self.saved.signatures["serve_resized"](image=tf.constant(batch))["probabilities"].numpy()

    def _predict(self, arrays, batch_size):
        serve = self.saved.signatures["serving_default"]
        probabilities = np.zeros((len(arrays), len(self.class_names)), np.float32)
        by_shape = {}
        for i, array in enumerate(arrays):
            by_shape.setdefault(array.shape, []).append(i)
        for indices in by_shape.values():  # a signature call takes a batch of one size
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                batch = tf.constant(np.stack([arrays[i] for i in chunk]))
                probabilities[chunk] = serve(images=batch)["probabilities"].numpy()
        return probabilities


def _quantized(batch, details):
    """``batch`` in the dtype of a tensor's ``details``: quantized with its scale and zero point if integer."""
    if np.issubdtype(details["dtype"], np.floating):
        return batch.astype(details["dtype"])
    scale, zero = details["quantization"]
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(batch / scale + zero), limits.min, limits.max).astype(details["dtype"])


def _dequantized(values, details):
    """A tensor's ``values`` as float32: dequantized with the scale and zero point of its ``details`` if integer."""
    if np.issubdtype(details["dtype"], np.floating):
        return values.astype(np.float32)
    scale, zero = details["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


@contextlib.contextmanager
def _loading(file):
    """Any failure inside as one line: ``cannot load FILE: the runtime's first line``."""
    try:
        yield
    except Exception as err:  # noqa: BLE001  (runtimes fail on a bad file with anything; say it in one line)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TransferkitError(f"cannot load {file}: {first[:300]}") from err


def _sidecar_labels(file):
    labels = file.with_name("labels.json")
    if not labels.is_file():
        raise TransferkitError(f"{file} holds no class names and there is no labels.json beside it")
    return json.loads(labels.read_text())


class TFLitePredictor(Predictor):
    """A TFLite export, run by its ``serving_default`` signature (``image`` -> ``probabilities``) in LiteRT's
    interpreter; integer inputs and outputs (a quantized model's) are converted here with the file's scale and
    zero point. The class names come from the file's ``labels.json`` metadata entry (or a ``labels.json``
    beside it)."""

    def __init__(self, file):
        from transferkit.tflite_file import interpreter, read_labels

        file = Path(file)
        with _loading(file):
            info = read_labels(file) or _sidecar_labels(file)
            self.interpreter, self.runtime = interpreter(file)
            self.runner = self.interpreter.get_signature_runner()
        (self.input_name, self.input), = self.runner.get_input_details().items()
        (self.output_name, self.output), = self.runner.get_output_details().items()
        super().__init__(file.parent, info["class_names"], info["image_size"], info["resize"])
        with native_stderr_silenced():  # the first call creates the XNNPACK delegate, which says so on stderr
            self.run_resized(np.zeros((1, self.image_size, self.image_size, 3), np.float32))

    def run_resized(self, batch):
        answer = self.runner(**{self.input_name: _quantized(batch, self.input)})[self.output_name]
        return _dequantized(answer, self.output)


class ONNXPredictor(Predictor):
    """An ONNX export in onnxruntime (CPU); the class names, image size and resize mode come from the
    model's metadata."""

    def __init__(self, file):
        try:
            import onnxruntime
        except ImportError as err:
            raise TransferkitError(f"ONNX models need onnxruntime (pip install 'transferkit[onnx]'): {err}") from err
        file = Path(file)
        with _loading(file):
            self.session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.input_name = self.session.get_inputs()[0].name
        super().__init__(file.parent, json.loads(meta["class_names"]), meta["image_size"], meta["resize"])

    def run_resized(self, batch):
        return self.session.run(None, {self.input_name: batch})[0]


def load_keras_model(path):
    """Load a ``.keras`` model with ``safe_mode=True`` (transferkit's layers are registered classes)."""
    return keras.saving.load_model(path, safe_mode=True)


FILE_FORMATS = {".tflite": TFLitePredictor, ".onnx": ONNXPredictor}


def stored_calibration(folder):
    """``{"temperature": T, "reject_threshold": t}`` as the run directory or export in ``folder`` stores them: a
    run in its ``metrics.json`` (``calibration``), an export in its ``export.json`` or ``labels.json``; None for
    what is not stored (a run from before calibration). ``T`` is already folded into the model's weights.

    Example:
        >>> stored_calibration(Path("runs/demo-finetune-20261123-171500/export/tflite"))
        {'temperature': 1.74, 'reject_threshold': 0.6132}
    """
    folder = Path(folder)
    for name in ("metrics.json", "export.json", "labels.json"):
        if (folder / name).is_file():
            stored = json.loads((folder / name).read_text())
            stored = (stored.get("calibration") or {}) if name == "metrics.json" else stored
            return {key: stored.get(key) for key in NOT_STORED}
    return dict(NOT_STORED)


def load(path):
    """A :class:`Predictor` for a run directory or an export: SavedModel, Keras, TFLite or ONNX (its folder,
    or its ``.keras``, ``.tflite`` or ``.onnx`` file). Its ``calibration`` is what the source stores
    (:func:`stored_calibration`), the rejection threshold :meth:`Predictor.answers` uses among it.

    Example:
        >>> predictor = transferkit.load("runs/demo-finetune-20261123-171500")
        >>> predictor.predict(np.zeros((50, 40, 3), np.uint8)).shape, predictor.labels[:2]
        ((1, 10), ('t-shirt_top', 'trouser'))
        >>> transferkit.load("runs/demo-finetune-20261123-171500/export/tflite").runtime
        'tf.lite.Interpreter (tensorflow 2.21.0)'
    """
    predictor = _load(Path(path))
    predictor.calibration = stored_calibration(predictor.path)
    return predictor


def _load(path):
    if path.is_file() and path.suffix in FILE_FORMATS:
        return FILE_FORMATS[path.suffix](path)
    if path.is_file() and path.suffix == ".keras":
        path = path.parent
    if (path / "saved_model.pb").is_file():
        return SavedModelPredictor(path)
    for suffix, predictor in FILE_FORMATS.items():
        if (path / f"model{suffix}").is_file():
            return predictor(path / f"model{suffix}")
    state = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    if state.get("status") not in (None, "completed"):
        raise TransferkitError(f"the run in {path} has not completed (status: {state['status']}); finish it with: "
                               f"transferkit run --resume {path}")
    if not (path / "model.keras").is_file():
        raise TransferkitError(f"{path} is neither a run directory nor an export (no model.keras, saved_model.pb, "
                               f"model.tflite or model.onnx)")
    if (path / "labels.json").is_file():  # a Keras export
        info = json.loads((path / "labels.json").read_text())
        resize_mode = info["resize"]
    else:
        info = json.loads((path / "metrics.json").read_text())
        resize_mode = load_recipe(str(path / "recipe.yaml")).data.resize
    return KerasPredictor(path, load_keras_model(path / "model.keras"), info["class_names"], info["image_size"],
                          resize_mode)
