"""Linear probes: how well a logistic regression separates a backbone's features (scikit-learn).

A linear probe is the standard yardstick of what pretrained features are worth: fast (seconds), free of any
training schedule, and the accuracy a dense head on frozen features should reach at least. transferkit uses
it to pick a backbone before training (``--backbone auto``) and ``bench/`` reports it next to
feature_extraction's own accuracy.
"""
import warnings

import numpy as np

from transferkit.errors import TransferkitError

C_GRID = np.logspace(-3, 1, 5)  # the logistic regression's inverse regularisations, cross-validated


def pooled(features):
    """``(N, D)`` features: conv maps ``(N, H, W, C)`` averaged over space, as the default head pools them."""
    features = np.asarray(features, dtype=np.float32)
    return features.mean(axis=(1, 2)) if features.ndim == 4 else features.reshape(len(features), -1)


def _folds(labels, most=5):
    return int(max(2, min(most, np.bincount(labels).min())))


def probe_score(features, labels, seed=0, repeats=4):
    """Cross-validated accuracy (up to 5 stratified folds, ``repeats`` times reshuffled) of a ridge classifier
    on standardised ``features``, its regularisation chosen inside each training fold by leave-one-out: a linear
    probe that takes a tenth of a second per fit where a logistic regression takes seconds, and ranks backbones alike
    (measured on the demo). With a handful of images per class a single 5-fold split scores in steps of one
    image, so the folds are repeated. From the training split alone, it is a fair score to rank backbones by.

    Example:
        >>> probe_score(train_features, train_labels)
        0.81
    """
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = pooled(features), np.asarray(labels)
    if np.bincount(y).min() < 2:
        raise TransferkitError("a linear probe (backbone auto) needs at least 2 training images of every class; "
                               "name a backbone instead")
    model = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-2, 4, 13)))
    folds = RepeatedStratifiedKFold(n_splits=_folds(y), n_repeats=repeats, random_state=seed)
    scores = cross_val_score(model, x, y, cv=folds)
    return float(scores.mean())


def probe_accuracy(train, test, seed=0):
    """Test accuracy of a logistic regression fitted on ``train`` (``(features, labels)``), ``C`` chosen by
    cross-validation on ``train``: the feature-extraction limit a trained head is measured against.

    Example:
        >>> probe_accuracy((train_x, train_y), (test_x, test_y))
        0.827
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (x, y), (tx, ty) = train, test
    y = np.asarray(y)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    search = GridSearchCV(pipeline, {"logisticregression__C": C_GRID},
                          cv=StratifiedKFold(_folds(y), shuffle=True, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence chatter at the weakest regularisation
        search.fit(pooled(x), y)
    return float((search.predict(pooled(tx)) == np.asarray(ty)).mean())
