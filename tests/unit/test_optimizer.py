"""The fused Adam update: the same weights as Keras Adam in every mode transferkit trains in, and plain-Keras files."""
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.training.optimizer import adam

HERE = Path(__file__).resolve().parent


def conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])


def embedding_model():
    """Its embedding's gradient reaches the optimizer as IndexedSlices."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(20, 5), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def trained(make_model, optimizer, jit_compile=False, strategy=None):
    """``make_model()`` trained for 8 steps of batch 8 (2 epochs, no shuffling) with ``optimizer()``."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 12, 12, 3)).astype("float32") if make_model is conv_model else rng.integers(0, 20, (32, 4))
    y = rng.integers(0, 3, 32)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = make_model()
        model.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    assert model.jit_compile == jit_compile  # Keras drops XLA without failing, e.g. once op determinism is on
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model


def distances(make_model=conv_model, **kwargs):
    """How far Keras Adam moved the weights, and how far the fused Adam's weights are from Keras Adam's."""
    ours = trained(make_model, lambda: adam(1e-2), **kwargs)
    theirs = trained(make_model, lambda: keras.optimizers.Adam(1e-2), **kwargs)
    moved = max(np.abs(w - w0).max() for w, w0 in zip(theirs.get_weights(), make_model().get_weights()))
    return moved, max(np.abs(a - b).max() for a, b in zip(ours.get_weights(), theirs.get_weights()))


def _in_a_fresh_process(call, setup=""):
    """The numbers ``call`` (an expression giving a tuple, e.g. ``distances(...)``) gives in a new Python after
    ``setup``: for what process-wide settings an earlier test made (op determinism, which turns XLA off) must not
    reach, or what must come before TensorFlow starts (logical devices)."""
    script = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
{setup}
from test_optimizer import distances
print("RESULT", *{call})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    line = next((row for row in proc.stdout.splitlines() if row.startswith("RESULT")), None)
    assert line, proc.stderr[-3000:]
    return [float(value) for value in line.split()[1:]]


@pytest.mark.parametrize("mode", ["graph", "xla", "mixed_float16", "sparse"])
def test_fused_adam_trains_to_the_same_weights_as_keras_adam(mode):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mode == "mixed_float16" else "float32")
    try:
        moved, off = _in_a_fresh_process("distances(jit_compile=True)") if mode == "xla" else \
            distances(embedding_model if mode == "sparse" else conv_model)
    finally:
        keras.config.set_dtype_policy(previous)
    print(mode, moved, off)
    assert moved > 0.05  # eight steps at learning rate 1e-2 moved the weights ...
    assert off < 1e-5  # ... and the two optimizers moved them to the same place


def test_fused_adam_under_mirrored_strategy_on_two_devices():
    setup = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""
    replicas, moved, off = _in_a_fresh_process("(strategy.num_replicas_in_sync, *distances(strategy=strategy))", setup)
    assert replicas == 2
    assert moved > 0.05 and off < 1e-5


def test_a_model_trained_with_it_saves_and_loads_in_plain_keras(tmp_path):
    trained(conv_model, lambda: adam(1e-3)).save(tmp_path / "m.keras")
    code = ("import keras, sys\nm = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
            "print(type(m.optimizer).__name__, int(m.optimizer.iterations.numpy()))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120)
    assert proc.stdout.split()[-2:] == ["Adam", "8"], proc.stderr[-3000:]
