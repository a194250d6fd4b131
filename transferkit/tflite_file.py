"""The class names inside a ``.tflite`` file, its tensors named as its signature, and LiteRT's interpreter.

The labels travel as a ``labels.json`` entry of the flatbuffer's metadata map (the one the converter fills
with ``min_runtime_version`` and ``CONVERSION_METADATA``), written with TensorFlow's own
``flatbuffer_utils`` by the round trip the converter makes to add ``CONVERSION_METADATA``: TFLite Support's metadata writer (``tflite-support`` 0.4.4, unmaintained since 2023)
needs protobuf < 4, which TensorFlow 2.21 cannot run with. Any flatbuffer reader gets them back, e.g.
TensorFlow's ``flatbuffer_utils.read_model(path).metadata``; :func:`read_labels` does it without TensorFlow's
converter.

Example:
    >>> data = with_labels(converter.convert(), {"class_names": ["cat", "dog"], "image_size": 96})
    >>> read_labels(data)["class_names"]
    ['cat', 'dog']
"""
import json
import warnings
from pathlib import Path

import numpy as np

from transferkit.errors import TransferkitError

LABELS_ENTRY = "labels.json"


def with_labels(data, labels):
    """The TFLite model ``data`` (bytes) with ``labels`` (a JSON-able dict) as its ``labels.json`` metadata
    entry, and each signature's input and output tensors renamed as the signature names them (the converter
    calls them ``serving_default_image:0`` and ``StatefulPartitionedCall:0``).

    Example:
        >>> interpreter = tf.lite.Interpreter(model_content=with_labels(data, {"class_names": ["a", "b"]}))
        >>> interpreter.get_input_details()[0]["name"]
        'image'
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for signature in model.signatureDefs:
        tensors = model.subgraphs[signature.subgraphIndex].tensors
        for entry in list(signature.inputs) + list(signature.outputs):
            tensors[entry.tensorIndex].name = entry.name
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(labels).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = LABELS_ENTRY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != LABELS_ENTRY.encode()] + [entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def read_labels(source):
    """The ``labels.json`` metadata entry of a TFLite model (a path or its bytes) as a dict, or None; a file
    that is no TFLite model raises :class:`TransferkitError`.

    Example:
        >>> read_labels("export/tflite/model.tflite")["class_names"]
        ['horizontal', 'vertical']
    """
    from tensorflow.lite.python import schema_py_generated as schema

    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise TransferkitError("not a TFLite model (no TFL3 file identifier)")
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == LABELS_ENTRY:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


def interpreter(path):
    """LiteRT's interpreter for the ``.tflite`` file ``path`` (``ai_edge_litert`` if installed, else
    ``tf.lite.Interpreter``) and the name of that runtime.

    Example:
        >>> runner, runtime = interpreter("model.tflite")
        >>> runner.get_signature_runner()(image=batch)["probabilities"]
    """
    try:
        from ai_edge_litert import __version__ as version
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path)), f"ai_edge_litert {version}"
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter's notice that it moves to ai_edge_litert
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(model_path=str(path)), f"tf.lite.Interpreter (tensorflow {tf.__version__})"
