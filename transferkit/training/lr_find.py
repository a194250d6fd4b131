"""fastai's learning-rate range test: train on batches at exponentially rising rates, watch the smoothed loss,
suggest a rate from its longest valley, then put the weights back.

Example:
    >>> finding = find_rate(model, train, loss, metric)
    >>> finding.suggestion
    0.0021
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from transferkit.data.pipeline import EpochData


@dataclass
class RateFinding:
    """The rates tried, the smoothed loss after each, and the suggested rate (fastai's ``valley``)."""

    rates: list
    losses: list
    suggestion: float
    stage: str = ""
    plot: Optional[Path] = None

    def to_dict(self):
        return {"stage": self.stage, "suggestion": self.suggestion, "rates": self.rates, "losses": self.losses}


def valley(rates, losses):
    """fastai's ``valley``: the rate two thirds of the way down the longest stretch of falling loss.

    Example:
        >>> valley([1e-4, 1e-3, 1e-2, 1e-1], [2.0, 1.5, 1.0, 3.0])
        0.001
    """
    n = len(losses)
    start, end = 0, 0
    longest = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end, start = i, i - longest[i]
    sections = (end - start) / 3
    return float(rates[start + int(sections) + int(sections / 2)])


def find_rate(model, train, loss, metric, start=1e-7, end=10.0, steps=100, beta=0.98, stop_factor=4.0,
              jit_compile=False):
    """Run the range test on ``model`` (compiled here with the fused Adam, ``loss`` and ``metric``) over
    ``train`` (:class:`~transferkit.data.pipeline.EpochData` or a dataset), ``steps`` batches from ``start``
    to ``end``, stopping early when the smoothed loss passes ``stop_factor`` times its minimum. The weights are
    restored afterwards; the model is left compiled at a throwaway rate (compile it again to train).

    Example:
        >>> find_rate(head, train, *loss_and_metric()).suggestion
    """
    from transferkit.training.optimizer import adam

    weights = model.get_weights()
    model.compile(optimizer=adam(start), loss=loss, metrics=[metric], jit_compile=bool(jit_compile))
    epochs = math.ceil(steps / train.steps) if isinstance(train, EpochData) else None
    batches = train.epochs(0, epochs) if epochs else train.repeat()
    factor = (end / start) ** (1 / max(steps - 1, 1))
    rates, losses, average, best = [], [], 0.0, math.inf
    for i, (x, y) in enumerate(batches.take(steps)):
        rate = start * factor ** i
        model.optimizer.learning_rate.assign(rate)
        value = float(np.asarray(model.train_on_batch(x, y, return_dict=True)["loss"]))
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (i + 1))
        if not math.isfinite(smoothed):
            break
        rates.append(rate)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > stop_factor * best:
            break
    model.set_weights(weights)
    # fastai leaves out the first tenth and the last five points, where the smoothing starts and the loss explodes
    skip = steps // 10
    kept_rates, kept_losses = rates[skip:-5] or rates, losses[skip:-5] or losses
    return RateFinding(rates, losses, valley(kept_rates, kept_losses))


def plot_finding(finding, path):
    """The loss against the learning rate (log scale), the suggestion marked, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transferkit.runs import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(finding.rates, finding.losses)
    index = int(np.argmin(np.abs(np.log(finding.rates) - math.log(finding.suggestion))))
    ax.plot([finding.suggestion], [finding.losses[index]], "ro", label=f"suggestion {finding.suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title(f"learning-rate range test{': stage ' + finding.stage if finding.stage else ''}")
    ax.legend()
    return save_figure(fig, path)
