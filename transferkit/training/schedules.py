"""Learning-rate schedules a stage can follow, as Keras ``LearningRateSchedule`` objects (saved with the model).

``constant`` keeps the rate; ``cosine`` warms up linearly over ``warmup_steps`` then follows a half cosine down
to 0 (timm's ``--sched cosine --warmup-epochs``); ``one_cycle`` is fastai's ``fit_one_cycle``: a half cosine
from ``rate / 25`` up to ``rate`` over the first 25% of the steps, then another down to ``rate / 1e5``.
The step is the optimizer's ``iterations``, which a resumed stage restores, so the schedule resumes too.
"""
import math

import keras
from keras import ops

SCHEDULES = ("constant", "cosine", "one_cycle")


def _cosine(start, end, fraction):
    """From ``start`` at fraction 0 to ``end`` at fraction 1 along a half cosine."""
    fraction = ops.clip(fraction, 0.0, 1.0)
    return end + (start - end) / 2.0 * (1.0 + ops.cos(math.pi * fraction))


@keras.saving.register_keras_serializable("transferkit")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """``rate * (step + 1) / warmup_steps`` during the warmup, then a half cosine from ``rate`` to 0 at
    ``total_steps``.

    Example:
        >>> float(WarmupCosine(1e-3, total_steps=100, warmup_steps=10)(4))
        0.0005
    """

    def __init__(self, rate, total_steps, warmup_steps=0):
        self.rate, self.total_steps, self.warmup_steps = float(rate), int(total_steps), int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        warmup = self.rate * (step + 1.0) / warm
        decay = _cosine(self.rate, 0.0, (step - self.warmup_steps) / float(max(self.total_steps - self.warmup_steps, 1)))
        return ops.where(step < self.warmup_steps, warmup, decay)

    def get_config(self):
        return {"rate": self.rate, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable("transferkit")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """fastai's one-cycle rate: a half cosine from ``rate / div`` to ``rate`` over the first ``warmup_fraction``
    of ``total_steps``, then one from ``rate`` to ``rate / final_div``.

    Example:
        >>> float(OneCycle(1e-3, total_steps=100)(25))
        0.001
    """

    def __init__(self, rate, total_steps, warmup_fraction=0.25, div=25.0, final_div=1e5):
        self.rate, self.total_steps = float(rate), int(total_steps)
        self.warmup_fraction, self.div, self.final_div = float(warmup_fraction), float(div), float(final_div)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = float(max(round(self.total_steps * self.warmup_fraction), 1))
        up = _cosine(self.rate / self.div, self.rate, step / warm)
        down = _cosine(self.rate, self.rate / self.final_div, (step - warm) / max(self.total_steps - warm, 1.0))
        return ops.where(step < warm, up, down)

    def get_config(self):
        return {"rate": self.rate, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction,
                "div": self.div, "final_div": self.final_div}


def make_schedule(name, rate, total_steps, warmup_steps=0):
    """The learning rate ``model.compile`` takes for schedule ``name``: a float for ``constant``, else a schedule.

    Example:
        >>> make_schedule("one_cycle", 1e-3, total_steps=40)
        <transferkit.training.schedules.OneCycle object at ...>
    """
    if name == "constant":
        return float(rate)
    if name == "cosine":
        return WarmupCosine(rate, total_steps, warmup_steps)
    if name == "one_cycle":
        return OneCycle(rate, total_steps)
    raise ValueError(f"unknown schedule {name!r}; one of {SCHEDULES}")
