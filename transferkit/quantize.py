"""Quantized TFLite exports: float16 weights, dynamic-range (int8 weights) or full int8 calibrated on
training images, optionally with a uint8 input.

The converter's own recipes (TensorFlow's post-training quantization guide): ``float16`` halves the weights
and computes in float32 on a CPU; ``dynamic`` stores weights as int8 and quantizes activations on the fly;
``int8`` quantizes weights and activations with ranges measured on a representative dataset (here up to
:data:`CALIBRATION_IMAGES` training images resized as in training), integer-only kernels, float32 input
and output unless ``uint8_input`` (whose scale is then 1 and zero point 0: raw pixel values).

Example:
    >>> quantization = Quantization("int8", calibration_images(run_dir, None, names, 224, "squash"), True)
    >>> configure(converter, quantization)
"""
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from transferkit.data.pipeline import resize
from transferkit.data.sources import rgb_uint8
from transferkit.errors import TransferkitError
from transferkit.evaluation import run_split
from transferkit.predict import image_files, read_image

MODES = ("float16", "dynamic", "int8")
CALIBRATION_IMAGES = 200
_PASS_IMAGES = ("pass calibration images: calibration=FOLDER or an array in Python, --calibration FOLDER on the "
                "command line")


@dataclass(frozen=True)
class Quantization:
    """How to quantize a TFLite export.

    ``mode``: one of :data:`MODES`; ``calibration``: float32 images (N, S, S, 3), 0-255, already resized
    (int8 only); ``described``: where they came from; ``uint8_input``: a uint8 input tensor (int8 only).

    Example:
        >>> Quantization("float16").manifest()
        {'mode': 'float16', 'uint8_input': False}
    """

    mode: str
    calibration: np.ndarray = None
    described: str = None
    uint8_input: bool = False

    def manifest(self):
        """What ``export.json`` records of it."""
        record = {"mode": self.mode, "uint8_input": self.uint8_input}
        if self.calibration is not None:
            record.update(calibration_images=len(self.calibration), calibration=self.described)
        return record


def calibration_images(run_dir, calibration, class_names, image_size, resize_mode, count=CALIBRATION_IMAGES):
    """Up to ``count`` images to calibrate int8 ranges on, resized as in training (float32, 0-255), and a line
    saying what they are: the run's training split (the first ``count`` in its order) by default, or
    ``calibration``: a folder of images (searched recursively) or an array of images.

    Example:
        >>> images, described = calibration_images(run_dir, None, names, 224, "squash")
        >>> images.shape, described
        ((50, 224, 224, 3), "50 images of the train split of recipe 'demo' (sample)")
    """
    if calibration is None:
        dataset, source = run_split(run_dir, "train", class_names, instead=_PASS_IMAGES)
        raw = [image.numpy() for image, _ in dataset.take(count)]
    elif isinstance(calibration, np.ndarray):
        raw, source = list(rgb_uint8(calibration)[:count]), "array given"
    else:
        raw, source = [read_image(path) for path in image_files([calibration])[:count]], f"folder {calibration}"
    if not raw:
        raise TransferkitError(f"no calibration images in the {source}")
    images = np.stack([resize(image, image_size, resize_mode).numpy() for image in raw]).astype(np.float32)
    return images, f"{len(images)} images of the {source}"


def configure(converter, quantization):
    """Set a ``tf.lite.TFLiteConverter`` up for ``quantization`` (a :class:`Quantization`).

    Example:
        >>> configure(converter, Quantization("dynamic"))
        >>> converter.optimizations
        [<Optimize.DEFAULT: 'DEFAULT'>]
    """
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization.mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization.mode == "int8":
        images = quantization.calibration
        converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if quantization.uint8_input:
            converter.inference_input_type = tf.uint8


def quantization_for(mode, uint8_input, calibration, run_dir, predictor):
    """The :class:`Quantization` of ``export(..., quantize=mode, uint8_input=..., calibration=...)``, its
    combinations checked; None for no quantization.

    Example:
        >>> quantization_for("int8", True, None, run_dir, predictor).manifest()["calibration_images"]
        50
    """
    if mode is None:
        if uint8_input or calibration is not None:
            raise TransferkitError("a uint8 input and calibration images are for --quantize int8")
        return None
    if mode not in MODES:
        raise TransferkitError(f"unknown quantization {mode!r}; one of {', '.join(MODES)}")
    if mode != "int8":
        if uint8_input or calibration is not None:
            raise TransferkitError(f"a uint8 input and calibration images are for --quantize int8, not {mode}")
        return Quantization(mode)
    images, described = calibration_images(run_dir, calibration, predictor.class_names, predictor.image_size,
                                           predictor.resize)
    return Quantization(mode, images, described, bool(uint8_input))
