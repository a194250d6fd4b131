"""A head stage fitted, not trained: a logistic regression to convergence on the frozen base's cached features
(``feature_extraction.fit: logistic``, ``finetune.head_fit: logistic``), folded into the head's softmax layer.

With a handful of images per class, some 40 Adam steps leave a head short of the optimum that L-BFGS reaches in
a second on the same features (docs/speed.md, figure 8): this stage reaches it, so feature extraction scores the
linear probe's accuracy and fine-tuning starts from it.
"""
import time

import keras
import numpy as np

from transferkit.errors import TransferkitError
from transferkit.probe import C_GRID, dense_weights, fit_quietly, logistic
from transferkit.training.callbacks import beats


def _pooled(pool, features, chunk=256):
    return np.concatenate([keras.ops.convert_to_numpy(pool(np.asarray(features[i:i + chunk], np.float32)))
                           for i in range(0, len(features), chunk)])


def _scores(x, labels, kernel, bias):
    logits = x @ kernel + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    labels = np.asarray(labels)
    return float(-log_p[np.arange(len(labels)), labels].mean()), float((log_p.argmax(1) == labels).mean())


def fit_logistic_stage(ctx, head, stage, train, val, start_epoch=0):
    """Fit ``head`` (pooling, then its softmax Dense layer ``predictions``: a linear head) as a logistic
    regression on ``train`` ``(features, labels)``, one fit per ``C`` of :data:`~transferkit.probe.C_GRID`, and keep
    the ``C`` best on ``val`` as the stage ranks epochs (``monitor``, ``ties``). Returns the stage's one history
    row (loss and accuracy on both splits) and adds its record to ``ctx.stage_log`` as
    :func:`~transferkit.training.stage.train_stage` does, so a fine-tuning stage after it keeps it unless it does
    better on validation. Deterministic: a resumed run fits it again to the same weights.

    Example:
        >>> rows = fit_logistic_stage(ctx, head, recipe.feature_extraction.stages("head")[0], (x, y), (xv, yv))
        >>> rows[0]["val_accuracy"]
        0.945
    """
    trained = [layer.name for layer in head.layers if layer.weights]
    if trained != ["predictions"]:
        raise TransferkitError(f"stage '{stage.name}': a logistic fit needs a linear head (pooling and the softmax "
                               f"layer); this head has {', '.join(trained)}")
    started = time.perf_counter()
    pool, dense = head.get_layer("pool"), head.get_layer("predictions")
    (features, labels), (val_features, val_labels) = train, val
    x, x_val = _pooled(pool, features), _pooled(pool, val_features)
    best = None
    for c in C_GRID:
        weights = dense_weights(fit_quietly(logistic(c, ctx.class_weight), x, labels), dense.units)
        loss, accuracy = _scores(x_val, val_labels, *weights)
        value, tie = (loss, None) if stage.monitor == "val_loss" else (accuracy, loss)
        if best is None or beats(stage.monitor, value, tie, *best[1], ties=stage.ties != "first"):
            best = c, (value, tie), (loss, accuracy), weights
    c, (value, tie), (val_loss, val_accuracy), weights = best
    dense.set_weights(list(weights))
    loss, accuracy = _scores(x, labels, *weights)
    row = {"epoch": start_epoch + 1, "stage": stage.name, "loss": loss, "accuracy": accuracy,
           "val_loss": val_loss, "val_accuracy": val_accuracy, "seconds": round(time.perf_counter() - started, 3)}
    ctx.stage_log.append({"stage": stage.name, "fit": "logistic", "C": float(c), "epochs_run": 1, "epochs_planned": 1,
                          "kept_epoch": row["epoch"], "stopped_early": False, "monitor": stage.monitor, "best": value,
                          "best_tie": None if stage.ties == "first" else tie, "learning_rate": None,
                          "schedule": None})
    if ctx.verbose:
        print(f"stage '{stage.name}': logistic regression on {x.shape[1]} pooled features, C {c:g} of "
              f"{len(C_GRID)} by {stage.monitor}; val_accuracy {val_accuracy:.4f}", flush=True)
    return [row]
