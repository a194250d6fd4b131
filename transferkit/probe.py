"""Linear probes: how well a logistic regression separates a backbone's features (scikit-learn).

A linear probe is the standard yardstick of what pretrained features are worth: fast (seconds), free of any
training schedule, and the accuracy a dense head on frozen features should reach at least. transferkit uses
it to pick a backbone before training (``--backbone auto``) and ``bench/`` reports it next to
feature_extraction's own accuracy.
"""
import warnings

import numpy as np

_CS = np.logspace(-4, 2, 7)


def pooled(features):
    """``(N, D)`` features: conv maps ``(N, H, W, C)`` averaged over space, as the default head pools them."""
    features = np.asarray(features, dtype=np.float32)
    return features.mean(axis=(1, 2)) if features.ndim == 4 else features.reshape(len(features), -1)


def _folds(labels, most=5):
    return int(max(2, min(most, np.bincount(labels).min())))


def _model(C=None, folds=None, seed=0):
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if C is None:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        classifier = LogisticRegressionCV(Cs=_CS, cv=cv, max_iter=2000)
    else:
        classifier = LogisticRegression(C=C, max_iter=2000)
    return make_pipeline(StandardScaler(), classifier)


def probe_score(features, labels, seed=0):
    """Cross-validated accuracy of a logistic regression on ``features`` (the regularisation ``C`` chosen
    inside each training fold), from the training split alone: a fair score to rank backbones by.

    Example:
        >>> probe_score(train_features, train_labels)
        0.81
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x, y = pooled(features), np.asarray(labels)
    folds = _folds(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence chatter on tiny folds
        scores = cross_val_score(_model(folds=_folds(y, folds - 1) if folds > 2 else 2, seed=seed), x, y,
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(scores.mean())


def probe_accuracy(train, test, seed=0):
    """Test accuracy of a logistic regression fitted on ``train`` (``(features, labels)``), ``C`` chosen by
    cross-validation on ``train``: the feature-extraction limit a trained head is measured against.

    Example:
        >>> probe_accuracy((train_x, train_y), (test_x, test_y))
        0.827
    """
    (x, y), (tx, ty) = train, test
    y = np.asarray(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model(folds=_folds(y), seed=seed).fit(pooled(x), y)
    return float((model.predict(pooled(tx)) == np.asarray(ty)).mean())
