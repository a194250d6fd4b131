"""The trained dense head against the logistic-regression probe, on validation and on test:
``python bench/head_vs_probe.py [RECIPE] [SEEDS]`` (defaults: ``demo 1,2,3``).

For each seed, trains ``feature_extraction`` with ``RECIPE`` and its dense head trained by Adam
(``feature_extraction.fit: train``, whatever the recipe says) and prints one JSON line: the head's validation and
test accuracy, and a logistic regression's (standardised pooled features, the same cached features) at each C of
``transferkit.probe.C_GRID``, with the C best on validation. It says whether choosing between the head and the
probe on validation could close figure 8's gap (docs/speed.md); it could not, and the shipped recipes now
fit the head as a logistic regression with its C kept on validation (``fit: logistic``, docs/training.md).
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402
from run import policy_of, run_ours  # noqa: E402

from transferkit.api import predict_split  # noqa: E402
from transferkit.data.sources import load_data  # noqa: E402
from transferkit.features import predictor  # noqa: E402
from transferkit.probe import C_GRID, fit_quietly, logistic, pooled  # noqa: E402
from transferkit.recipes import load_recipe  # noqa: E402
from transferkit.strategies import Context  # noqa: E402
from transferkit.strategies.common import frozen_classifier  # noqa: E402
from transferkit.strategies.feature_extraction import extract_split, extractor_of  # noqa: E402


def features(recipe, splits):
    """``{split: (pooled features, labels)}`` of train, val and test, through the run's feature cache."""
    with policy_of(recipe):
        ctx = Context(recipe, splits, verbose=0)
        model, base, _ = frozen_classifier(ctx)
        predict = predictor(extractor_of(model, base))
        out = {split: extract_split(ctx, predict, split)[0] for split in ("train", "val", "test")}
    return {split: (pooled(x), np.asarray(y)) for split, (x, y) in out.items()}


def probe_rows(data):
    """``[(C, val accuracy, test accuracy)]`` of a logistic regression on standardised features, one per C."""
    rows = []
    for c in C_GRID:
        model = fit_quietly(logistic(c), *data["train"])
        rows.append((float(c), *(float(model.score(*data[s])) for s in ("val", "test"))))
    return rows


def main(name="demo", seeds="1,2,3"):
    for seed in (int(s) for s in seeds.split(",")):
        recipe = load_recipe(name, strategy="feature_extraction",
                             overrides=[f"seed={seed}", "feature_extraction.fit=train"])
        splits = load_data(recipe.data, recipe.seed)
        _, head_test, trained = run_ours(recipe, splits, "feature_extraction")
        labels, probabilities = predict_split(trained.model, Context(recipe, splits, verbose=0).data("val"))
        rows = probe_rows(features(recipe, splits))
        print(json.dumps({"recipe": name, "seed": seed, "head_val": float((probabilities.argmax(1) == labels).mean()),
                          "head_test": head_test, "probe_by_C": rows,
                          "probe_best_on_val": max(rows, key=lambda row: row[1])}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
