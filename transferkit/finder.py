"""``transferkit lr-find``: the learning-rate range test of one stage of a recipe, as fastai's ``lr_find``.

Example:
    >>> finding = transferkit.lr_find("demo", strategy="feature_extraction")
    >>> finding.suggestion, finding.plot
"""
import time
from pathlib import Path

import keras

from transferkit.api import prepare
from transferkit.errors import TransferkitError
from transferkit.runs import write_json
from transferkit.strategies import STRATEGIES, Context
from transferkit.strategies.runtime import precision, resolve_precision
from transferkit.training.callbacks import interruptible
from transferkit.training.lr_find import plot_finding
from transferkit.training.stage import RateFound


def lr_find(recipe="demo", *, strategy=None, stage=None, data=None, class_names=None, out="runs", overrides=(),
            rates=(1e-7, 10.0), verbose=0, **fields):
    """Run the range test at ``stage`` (default: the strategy's last stage, the one ``--lr`` sets) of ``recipe``:
    the stages before it train as the recipe says, then the rates sweep from ``rates[0]`` to ``rates[1]`` over
    about 100 batches.
    Writes ``out/<recipe>-<strategy>-lr-find-<time>.png`` (loss against rate, the suggestion marked) and a
    ``.json`` beside it; returns the :class:`~transferkit.training.lr_find.RateFinding` (``plot`` is the
    PNG's path). Other keyword arguments (``backbone``, ``image_size``, ...) are as for
    :func:`transferkit.run`.

    Example:
        >>> lr_find("photos/", strategy="finetune").suggestion
        0.00012
    """
    recipe, splits, _ = prepare(recipe, strategy=strategy, data=data, class_names=class_names, overrides=overrides,
                                verbose=verbose, **fields)
    spec = STRATEGIES[recipe.strategy]
    names = [s.name for s in spec.stages(recipe) if s.epochs > 0 and s.fit == "train"]  # a fitted head has no rate
    stage = stage or names[-1]
    if stage not in names:
        raise TransferkitError(f"{recipe.strategy} has no stage '{stage}' with epochs; its stages: {', '.join(names)}")
    keras.utils.set_random_seed(recipe.seed)
    start, end = (float(rate) for rate in rates)
    if not 0 < start < end:
        raise TransferkitError(f"rates must rise from a positive start; got {start:g} to {end:g}")
    ctx = Context(recipe, splits, verbose=verbose, find_rate_for=stage, sweep=(start, end))
    try:
        with precision(resolve_precision(recipe.mixed_precision)), interruptible():
            spec.train(ctx)
    except RateFound as found:
        finding = found.finding
    else:
        raise TransferkitError(f"stage '{stage}' was not trained, so its rate could not be searched")
    stem = Path(out) / f"{recipe.name}-{recipe.strategy}-lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    finding.plot = plot_finding(finding, stem.with_suffix(".png"))
    write_json(stem.with_suffix(".json"), {"recipe": recipe.name, "strategy": recipe.strategy, **finding.to_dict()})
    return finding
