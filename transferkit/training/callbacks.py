"""The callbacks every stage trains with: NaN guard, Ctrl-C, reseeded dropout, the learning-rate log, and early
stopping that keeps the best epoch (and survives a resume)."""
import contextlib
import math
import signal
import threading

import keras
import numpy as np

from transferkit.data.pipeline import epoch_seed, seed_generators
from transferkit.errors import TransferkitError
from transferkit.training.state import changing, read_weights, save_state


class NonFiniteLoss(TransferkitError):
    """The loss became NaN or infinite; the model holds the weights of the last good epoch."""


class NanGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss, or at an epoch end whose weights are not all finite (a NaN kernel can
    leave the loss finite: ReLU and max pooling drop NaN), and put back the weights of the last good epoch.

    It runs before BackupAndRestore at each epoch end, so the backup never holds broken weights. Only the weights
    ``fit`` can change are copied and checked (a frozen base's never leave the model). ``bad`` says what broke.
    """

    def on_train_begin(self, logs=None):
        self.good, self.bad = None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.good is None:  # after every on_train_begin, so after BackupAndRestore restored a resumed stage
            self.indices = changing(self.model)
            self.good = self._changing()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.bad is None and loss is not None and not math.isfinite(float(loss)):
            self.bad = f"the loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        weights = self._changing() if self.bad is None else None
        if weights is not None and all(np.isfinite(w).all() for w in weights):
            self.good = weights
            return
        if self.bad is None:
            self.bad = f"the weights became nan or inf at epoch {epoch + 1} (the loss stayed finite)"
            self.model.stop_training = True
        weights = self.model.weights  # a new list at every access
        for i, weight in zip(self.indices, self.good):
            weights[i].assign(weight)

    def _changing(self):
        weights = self.model.weights
        return [weights[i].numpy() for i in self.indices]


_interrupted = threading.Event()


@contextlib.contextmanager
def interruptible():
    """Inside the block, Ctrl-C raises ``KeyboardInterrupt`` as usual and is also remembered, so that an
    interrupt Python drops (one raised inside a finalizer, where exceptions are only printed) still stops
    training at the next batch (:class:`StopOnInterrupt`). Left as it is outside the main thread or when
    the program has its own SIGINT handler.

    Example:
        >>> with interruptible():
        ...     trained = STRATEGIES["finetune"].train(ctx)
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    def handler(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    _interrupted.clear()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupted.clear()


class StopOnInterrupt(keras.callbacks.Callback):
    """Raise ``KeyboardInterrupt`` at the first batch end after a Ctrl-C that did not stop training itself."""

    def _check(self, *args, **kwargs):
        if _interrupted.is_set():
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check


class Reseed(keras.callbacks.Callback):
    """At each epoch's start, reset the model's random generators (dropout) to the seed and the epoch's index,
    so epoch ``k`` drops the same units whether the run went straight through or was resumed."""

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        state = np.array([epoch_seed(self.seed + 1, epoch), 0])
        for generator in seed_generators(self.model):
            generator.state.assign(state.astype(generator.state.dtype))


class LogLearningRate(keras.callbacks.Callback):
    """Add ``learning_rate`` (the rate of the epoch's last step, before any per-layer multiplier) to the epoch's
    logs, so history.csv and TensorBoard show the schedule. Runs before the callbacks that record the logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            rate = optimizer.learning_rate
            if callable(rate):  # a schedule: its rate at the last step taken
                rate = rate(optimizer.iterations - 1)
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


def model_weights(model):
    """``model.get_weights()``, with the optimizer's moving averages in place of the trainable weights when it
    keeps an EMA (the weights validation measured, through ``SwapEMAWeights``)."""
    optimizer = getattr(model, "optimizer", None)
    weights = model.get_weights()
    if optimizer is None or not optimizer.use_ema or not optimizer.built:
        return weights
    averages = {id(v): a for v, a in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)}
    return [np.array(averages[id(v)]) if id(v) in averages else w for v, w in zip(model.weights, weights)]


def beats(monitor, value, tie, best, best_tie, ties=True):
    """Whether ``value`` of ``monitor`` (a loss falls, an accuracy rises) beats ``best``; an equal value wins on a
    lower ``tie`` (the validation loss) when ``ties``. How :class:`BestEpoch` ranks epochs, and
    :func:`~transferkit.training.logistic.fit_logistic_stage` its candidate heads.

    Example:
        >>> beats("val_accuracy", 0.9, 0.2, best=0.9, best_tie=0.3)
        True
    """
    if best is None or value != best:
        return best is None or (value < best if monitor.endswith("loss") else value > best)
    return ties and tie is not None and best_tie is not None and tie < best_tie


class BestEpoch(keras.callbacks.EarlyStopping):
    """Keras' ``EarlyStopping`` that keeps the best epoch's weights, and picks up where a resumed stage left off.

    ``patience`` None never stops early (the best epoch is still kept when ``restore_best``). ``earlier``
    (history rows of this stage from before a resume, each with ``epoch`` counted from 1 across stages) replays
    the monitor's values, and ``best_file`` (an ``.npz``) holds the best weights on disk so a resumed stage can
    restore them. ``start`` ``(value, epoch, tie value)`` is the monitor's best value, epoch (1-based) and
    ``tie`` value (or None) of the stage before, whose kept weights the model holds when this stage begins: this
    stage keeps them unless one of its epochs does better. ``tie`` names what
    ranks epochs of equal ``val_accuracy`` (``val_loss``: the lower wins, and counts as an improvement for
    ``patience``); None ranks the first best first. At the end, ``kept_epoch`` (1-based) is the epoch whose
    weights the model holds, and ``best_tie`` its ``tie`` value.

    Example:
        >>> best = BestEpoch("val_accuracy", patience=5)
        >>> model.fit(..., callbacks=[best]); best.kept_epoch
        7
    """

    def __init__(self, monitor="val_accuracy", patience=None, restore_best=True, earlier=(), best_file=None,
                 start=None, tie="val_loss"):
        super().__init__(monitor=monitor, patience=patience if patience is not None else 10 ** 9,
                         restore_best_weights=restore_best, mode="min" if monitor.endswith("loss") else "max")
        self.earlier, self.best_file, self.start = list(earlier), best_file, start
        self.tie = tie if monitor == "val_accuracy" else None
        self.kept_epoch = self.best_tie = None

    def _better(self, value, tie):
        """Whether an epoch with ``value`` of the monitor (and ``tie``) beats the best so far."""
        return beats(self.monitor, value, tie, self.best, self.best_tie, ties=self.tie is not None)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._set_monitor_op()
        self.last_epoch = None
        if self.start is not None and self.restore_best_weights:
            # the weights the stage begins with: a resumed stage's are restored by BackupAndRestore only later
            self.best, epoch, self.best_tie = self.start
            self.best_epoch = epoch - 1
            self.best_weights = model_weights(self.model)
        for row in self.earlier:
            value = row.get(self.monitor)
            if value is None:
                continue
            self.wait += 1
            tie = row.get(self.tie) if self.tie else None
            if self._better(value, tie):
                self.best, self.best_epoch, self.wait, self.best_tie = value, row["epoch"] - 1, 0, tie
            self.last_epoch = row["epoch"] - 1
        # the best epoch's weights are on disk (the model's own are restored by BackupAndRestore only after this)
        improved = self.start is None or self.best_epoch != self.start[1] - 1
        if improved and self.best is not None and self.restore_best_weights and self.best_file \
                and self.best_file.is_file():
            self.best_weights = read_weights(self.best_file, self.model)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = (logs or {}).get(self.monitor)
        self.last_epoch = epoch
        if current is None:
            return
        self.wait += 1
        tie = (logs or {}).get(self.tie) if self.tie else None
        if self._better(current, tie):
            self.best, self.best_epoch, self.wait, self.best_tie = current, epoch, 0, tie
            if self.restore_best_weights:
                self.best_weights = model_weights(self.model)
                if self.best_file is not None:
                    self._save_best()
            return
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def _save_best(self):
        """The best weights of the layers that train, atomically (:func:`~transferkit.training.state.save_state`:
        several times faster than ``save_weights``, which counts when every epoch of a short stage improves)."""
        self.best_file.parent.mkdir(parents=True, exist_ok=True)
        save_state(self.best_file, self.model, weights=self.best_weights, optimizer=False)

    def on_train_end(self, logs=None):
        self.kept_epoch = None if self.last_epoch is None else self.last_epoch + 1
        if self.restore_best_weights and self.best_weights is not None and self.best_epoch != self.last_epoch:
            self.model.set_weights(self.best_weights)
            self.kept_epoch = self.best_epoch + 1
