"""The Keras internals transferkit relies on, each named, so a Keras upgrade that moves one fails here with the
place to fix instead of deep inside a training run. setup.py bounds keras to the versions these pass on."""
import inspect

import keras
import numpy as np
import pytest

from transferkit.training.optimizer import adam

INTERNALS = [
    # (what, where it is used)
    ("Adam._get_variable_index, _momentums, _velocities, _trainable_variables",
     "transferkit/training/optimizer.py: the fused Adam update and per-layer rates"),
    ("Optimizer._model_variables_moving_average", "transferkit/training/callbacks.py: model_weights (EMA)"),
    ("Model._initial_epoch", "transferkit/training/stage.py: cleared before each stage's fit (BackupAndRestore)"),
    ("BackupAndRestore._load_model, _save_model, _current_epoch",
     "transferkit/training/state.py: Checkpoint"),
    ("Layer._seed_generators", "transferkit/data/pipeline.py: seed_generators (exact resume)"),
    ("EarlyStopping._is_improvement, _set_monitor_op", "transferkit/training/callbacks.py: BestEpoch"),
    ("keras.src.backend.tensorflow.trainer: TensorFlowTrainer._maybe_symbolic_build, reduce_per_replica, "
     "_collective_all_reduce_multi_worker", "transferkit/strategies/runtime.py: _keras_multiworker_fixes"),
]


def _fail(index, detail):
    what, where = INTERNALS[index]
    pytest.fail(f"keras {keras.__version__} moved {what} ({detail}); fix {where} and the keras bound in setup.py")


def test_adam_internals_used_by_the_fused_update():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = adam(1e-3, ema=0.9)
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(np.array([[1.0, 2.0, 3.0]]), np.array([[0.0, 1.0]]))
    variable = model.trainable_weights[0]
    try:
        index = optimizer._get_variable_index(variable)
        assert optimizer._trainable_variables[index] is variable
        assert optimizer._momentums[index].shape == variable.shape == optimizer._velocities[index].shape
    except (AttributeError, AssertionError) as err:
        _fail(0, err)
    try:
        assert len(optimizer._model_variables_moving_average) == len(model.trainable_weights)
    except (AttributeError, AssertionError) as err:
        _fail(1, err)


def test_backup_and_restore_still_resumes_through_model_initial_epoch():
    source = inspect.getsource(keras.callbacks.BackupAndRestore)
    if "_initial_epoch" not in source:
        _fail(2, "BackupAndRestore no longer sets it")


def test_backup_and_restore_still_loads_and_saves_through_the_methods_checkpoint_overrides():
    source = inspect.getsource(keras.callbacks.BackupAndRestore)
    for needed in ("self._load_model()", "self._save_model()", "self._current_epoch = epoch + 1"):
        if needed not in source:
            _fail(3, f"no {needed!r} in it")


def test_layers_keep_their_random_generators_in_seed_generators():
    layer = keras.layers.Dropout(0.5, seed=1)
    if not any(isinstance(g, keras.random.SeedGenerator) for g in getattr(layer, "_seed_generators", [])):
        _fail(4, "Dropout has no _seed_generators list")


def test_early_stopping_helpers():
    callback = keras.callbacks.EarlyStopping(mode="min")
    try:
        callback._set_monitor_op()
        assert callback._is_improvement(0.5, 1.0) and not callback._is_improvement(1.0, 0.5)
    except (AttributeError, AssertionError) as err:
        _fail(5, err)


def test_tensorflow_trainer_functions_patched_for_multiworker():
    try:
        from keras.src.backend.tensorflow import trainer

        assert callable(trainer.TensorFlowTrainer._maybe_symbolic_build)
        assert callable(trainer.reduce_per_replica) and callable(trainer._collective_all_reduce_multi_worker)
    except (ImportError, AttributeError, AssertionError) as err:
        _fail(6, err)
