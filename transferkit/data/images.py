"""Image files: check each one up front, then decode the good ones to RGB ``uint8`` in tf.data.

TensorFlow decodes JPEG (CMYK too), PNG (16-bit scaled to 8, gray and RGBA made RGB), GIF (first frame) and
true-colour BMP correctly; it misreads palette BMPs as gray, cannot read TIFF, and reads WebP only in recent
versions, so those three go through PIL.
Each file is checked once by the decoder that will read it in training, so a file that passes never fails
mid-epoch: truncated, zero-byte and non-image files are reported with the reason instead.
"""
import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from transferkit.console import native_stderr_silenced

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_TF_FORMATS = {"JPEG", "PNG", "GIF"}
_TF_BMP_MODES = {"RGB", "RGBA", "L"}  # TensorFlow ignores a BMP's palette
_HIGH_DEPTH = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}


@dataclass(frozen=True)
class ImageCheck:
    """What checking one file found.

    Args:
        path: the file.
        sha256: hex digest of its bytes (exact duplicates share it).
        error: why it cannot be used, or None if it decodes.
        via_pil: decode it with PIL rather than TensorFlow (palette BMP, TIFF, WebP).

    Example:
        >>> check_image("cat.jpg")
        ImageCheck(path='cat.jpg', sha256='9f2c...', error=None, via_pil=False)
    """

    path: str
    sha256: str
    error: Optional[str] = None
    via_pil: bool = False


def _tf_message(err):
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", getattr(err, "message", str(err)))
    return re.sub(r"\s*\[Op:\w+\]", "", text).strip().splitlines()[0]


def check_image(path):
    """Read ``path`` and decode it with the decoder training will use; never raises.

    Example:
        >>> check_image("empty.jpg").error
        'empty file (0 bytes)'
    """
    try:
        data = open(path, "rb").read()
    except OSError as err:
        return ImageCheck(str(path), "", f"cannot read: {err.strerror or err}")
    return check_bytes(data, str(path))


def check_bytes(data, path=""):
    """:func:`check_image` for the bytes of a file (``path`` only names it in the result).

    Example:
        >>> check_bytes(b"hello", "notes.jpg").error
        'not an image (unrecognised format)'
    """
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageCheck(path, digest, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, mode = image.format, image.mode
            via_pil = not (kind in _TF_FORMATS or (kind == "BMP" and mode in _TF_BMP_MODES))
            if via_pil:
                image.load()
    except UnidentifiedImageError:
        return ImageCheck(path, digest, "not an image (unrecognised format)")
    except Image.DecompressionBombError as err:
        return ImageCheck(path, digest, f"too large to decode safely ({err})".split(", could be")[0] + ")")
    except (OSError, ValueError, SyntaxError) as err:
        return ImageCheck(path, digest, f"corrupt or truncated image ({err})")
    if not via_pil:
        try:
            if kind == "JPEG":  # decoding at 1/8 scale reads every byte of the entropy-coded data, 2x faster
                tf.io.decode_jpeg(data, channels=3, ratio=8)
            else:
                tf.io.decode_image(data, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
            return ImageCheck(path, digest, f"corrupt or truncated {kind} ({_tf_message(err)})")
    return ImageCheck(path, digest, None, via_pil)


def check_images(paths):
    """:func:`check_image` for many files, on all CPU cores (decoding releases the GIL), in ``paths`` order.

    Example:
        >>> [c.error for c in check_images(["ok.png", "zero.jpg"])]
        [None, 'empty file (0 bytes)']
    """
    with native_stderr_silenced(), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(check_image, paths))


def pil_rgb(path):
    """Decode a file with PIL to an RGB ``uint8`` array (first frame; high bit depths scaled to 8 bits).

    Example:
        >>> pil_rgb("palette.bmp").shape
        (20, 30, 3)
    """
    with Image.open(path) as image:
        if image.mode in _HIGH_DEPTH:
            gray = np.asarray(image, np.float64) * (255.0 / _HIGH_DEPTH[image.mode])
            return np.repeat(np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
        return np.asarray(image.convert("RGB"))


def decode_file(path, via_pil):
    """tf.data op: the RGB ``uint8`` image in file ``path``, read by TensorFlow or, if ``via_pil``, by PIL.

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices((paths, via_pil)).map(decode_file)
    """

    def with_pil():
        return tf.numpy_function(lambda p: pil_rgb(np.asarray(p).item().decode()), [path], tf.uint8,
                                 stateful=False)

    def with_tf():
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    image = tf.cond(via_pil, with_pil, with_tf)
    return tf.ensure_shape(image, (None, None, 3))


def to_rgb_uint8(image):
    """Make a decoded image tensor RGB ``uint8``: gray (and gray + alpha) repeated, alpha dropped, 16 bits scaled.

    Example:
        >>> to_rgb_uint8(tf.zeros((28, 28, 1), tf.uint8)).shape
        TensorShape([28, 28, 3])
    """
    if image.dtype != tf.uint8:
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    channels = image.shape[-1]
    if channels in (1, 2):
        return tf.image.grayscale_to_rgb(image[..., :1])
    return image[..., :3] if channels == 4 else image
