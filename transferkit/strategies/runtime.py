"""How a run executes, not what it trains: mixed precision, the float32 model that is saved, and tf.distribute.

``mixed_precision`` (a recipe key, ``auto`` by default) sets the Keras dtype policy for the duration of one run
only; the weights stay float32 (Keras keeps float32 variables under mixed policies), softmax outputs are float32,
and the model a run returns and saves is rebuilt in float32 with the trained weights, so it loads and predicts
the same way in any environment. ``distribute`` picks a ``tf.distribute`` strategy, under whose scope the run
builds and trains its models, with the batch size per replica and learning rates scaled linearly.
"""
import contextlib
import functools
from pathlib import Path

import keras

from transferkit.errors import TransferkitError

POLICIES = ("none", "auto", "mixed_float16", "mixed_bfloat16")


def cpu_supports_bf16():
    """True when this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX), which oneDNN uses."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def gpus_support_float16(gpus):
    """True when every GPU in ``gpus`` has compute capability 7.0 or higher (tensor cores: float16 pays).

    A GPU that reports no compute capability counts as not supporting it, so ``auto`` never runs slower
    than float32.
    """
    import tensorflow as tf

    return bool(gpus) and all(
        tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)) >= (7, 0)
        for gpu in gpus)


def resolve_precision(setting):
    """The Keras dtype policy name for a recipe's ``mixed_precision``, or None for plain float32.

    ``auto`` (the default) is the fastest policy the hardware runs at float32's accuracy: ``mixed_float16`` on
    GPUs with tensor cores (compute capability 7.0+), ``mixed_bfloat16`` on a CPU with native bfloat16
    (AVX512_BF16 or AMX), else None: float32 on older GPUs and other CPUs, where the mixed policies are slower.

    Example:
        >>> resolve_precision("none") is None
        True
    """
    if setting in (None, "none"):
        return None
    if setting != "auto":
        return setting
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return "mixed_float16" if gpus_support_float16(gpus) else None
    return "mixed_bfloat16" if cpu_supports_bf16() else None


@contextlib.contextmanager
def precision(policy):
    """Set the global Keras dtype policy to ``policy`` (None: leave it) inside the block, then restore it."""
    if policy is None:
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _float32_config(node):
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and str(node.get("config", {}).get("name", "")).startswith("mixed"):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_float32_config(value) for value in node]
    return node


def is_mixed(model):
    """True if any layer of ``model`` (nested models included) computes in a mixed dtype policy."""
    return any(layer.dtype_policy.name.startswith("mixed") for layer in model._flatten_layers(include_self=True))


def float32_model(model, rebuild=False):
    """``model`` computing in float32, to predict and save: its mixed-precision layers switched to float32 in
    place (their variables are float32 already, so no weight changes) and its traced functions dropped; with
    ``rebuild``, a float32 copy with the same weights (a model trained under a ``tf.distribute`` strategy is
    rebuilt outside it, so that it predicts and saves like any other; trainable flags travel in the config, and
    the copy is not compiled).

    Example:
        >>> model = float32_model(trained.model)   # trained under mixed_bfloat16
        >>> is_mixed(model)
        False
    """
    if model is None:
        return model
    if rebuild:
        import transferkit.layers  # noqa: F401  (registers Preprocess and LocalResponseNormalization)

        config = _float32_config(keras.saving.serialize_keras_object(model))
        with precision("float32"):
            clone = keras.saving.deserialize_keras_object(config)
        clone.set_weights(model.get_weights())
        return clone
    if is_mixed(model):
        for layer in model._flatten_layers(include_self=True):
            if layer.dtype_policy.name.startswith("mixed"):
                layer.dtype_policy = "float32"
        model.train_function = model.test_function = model.predict_function = None  # traced in the mixed dtype
    return model


DISTRIBUTIONS = ("none", "mirrored", "multiworker")


@functools.cache
def distribution(setting):
    """The ``tf.distribute`` strategy for a recipe's ``distribute``, or None (one device, no strategy).

    ``mirrored``: ``MirroredStrategy`` over every local GPU, or over the logical CPU devices when there is no
    GPU (one CPU unless the process split it with ``tf.config.set_logical_device_configuration``).
    ``multiworker``: ``MultiWorkerMirroredStrategy``; the cluster and this worker's role come from ``TF_CONFIG``.
    It configures collective ops, which TensorFlow allows only before it has run anything, so a strategy is
    made once per process and reused, and :func:`transferkit.run` makes it before loading any data.

    Example:
        >>> distribution("none") is None
        True
    """
    if setting in (None, "none"):
        return None
    import tensorflow as tf

    if setting == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if setting != "multiworker":
        raise ValueError(f"unknown distribute setting {setting!r}; one of {DISTRIBUTIONS}")
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        if "startup" not in str(err):
            raise
        raise TransferkitError("distribute=multiworker must be set up before TensorFlow runs anything in the "
                               "process: start it in a fresh process (transferkit run ... --distribute multiworker, "
                               "or transferkit.run() first thing in a script)") from None


def scaled_for_replicas(recipe, replicas):
    """The recipe as ``replicas`` devices train it: ``batch_size`` is per replica, so the global batch is
    ``batch_size * replicas``, and every learning rate is multiplied by ``replicas`` (the linear scaling rule,
    Goyal et al. 2017), so each example moves the weights as much as on one device."""
    if replicas <= 1:
        return recipe
    from transferkit.strategies import STRATEGIES

    updates = {"batch_size": recipe.batch_size * replicas}
    for spec in STRATEGIES.values():
        config = spec.section(recipe)
        scaled = {key: getattr(config, key) * replicas for key in spec.rate_keys(recipe)
                  if getattr(config, key) != "auto"}  # a rate found by the range test is found at the global batch
        updates[spec.name] = config.model_copy(update=scaled)
    return recipe.model_copy(update=updates)


@contextlib.contextmanager
def scope(strategy):
    """``strategy.scope()``, or nothing when ``strategy`` is None; with ``MultiWorkerMirroredStrategy``, also
    the two fixes Keras needs to ``fit`` under it (:func:`_keras_multiworker_fixes`)."""
    if strategy is None:
        yield
        return
    import tensorflow as tf

    fixes = _keras_multiworker_fixes if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) \
        else contextlib.nullcontext
    with strategy.scope(), fixes():
        yield


@contextlib.contextmanager
def _keras_multiworker_fixes():
    """Keras 3 (3.15 included) cannot ``fit`` under ``MultiWorkerMirroredStrategy`` with several workers
    (keras-team/keras#20585). Two of its steps take a cross-worker mean the strategy refuses: before the first
    step it builds the model from the mean of the first batch, which the strategy cannot take of an
    ``(images, labels)`` tuple (this worker's part of the batch has the shapes and dtypes the build needs), and
    after each step it averages the scalar losses and metrics along an axis 0 they do not have (their mean over
    the replicas is what it wants). Both are replaced inside the block, then put back."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    def symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:  # as Keras: a model made outside the strategy builds when traced
            return
        if iterator is not None:
            for _, _, batches in iterator:
                local = self.distribute_strategy.experimental_local_results
                data_batch = tree.map_structure(lambda value: local(value)[0], next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    keras_build, keras_reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica = symbolic_build, reduce_per_replica
    try:
        yield
    finally:
        trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica = keras_build, keras_reduce
