"""Linear probes: how well a logistic regression separates a backbone's features (scikit-learn).

A linear probe is the standard yardstick of what pretrained features are worth: fast (seconds), free of any
training schedule, and the accuracy a dense head on frozen features should reach at least. transferkit uses
it to pick a backbone before training (``--backbone auto``) and ``bench/`` reports it next to
feature_extraction's own accuracy.
"""
import warnings

import numpy as np

from transferkit.errors import TransferkitError

C_GRID = np.logspace(-3, 1, 5)  # the logistic regression's inverse regularisations to choose from


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


def logistic(c=1.0, class_weight=None):
    """An unfitted scikit-learn pipeline: standardisation, then a logistic regression of inverse regularisation ``c``
    fitted by L-BFGS to convergence.

    Example:
        >>> logistic(0.01).fit(train_x, train_y).score(val_x, val_y)
        0.945
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, class_weight=class_weight))


def fit_quietly(pipeline, features, labels):
    """``pipeline`` fitted on pooled ``features``, without lbfgs' convergence chatter at the weakest regularisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline.fit(pooled(features), np.asarray(labels))


def dense_weights(pipeline, num_classes):
    """``(kernel (D, num_classes), bias)`` of one softmax Dense layer on the raw pooled features that gives a fitted
    :func:`logistic` pipeline's probabilities: the standardisation folded into the weights, a binary model's single
    logit as the second class's against a zero first, a class absent from training at -30.

    Example:
        >>> kernel, bias = dense_weights(fit_quietly(logistic(0.1), x, y), 10)
        >>> np.allclose(softmax(pooled(x) @ kernel + bias), pipeline.predict_proba(pooled(x)))
        True
    """
    scaler, model = pipeline.named_steps.values()
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:
        coef, intercept = np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    kernel = np.zeros((coef.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, -30.0, np.float32)
    kernel[:, model.classes_] = (coef / scaler.scale_).T
    bias[model.classes_] = intercept - coef @ (scaler.mean_ / scaler.scale_)
    return kernel, bias


def probe_accuracy(train, test, seed=0):
    """Test accuracy of a logistic regression fitted on ``train`` (``(features, labels)``), ``C`` chosen by
    cross-validation on ``train``: the feature-extraction limit a trained head is measured
    against.

    Example:
        >>> probe_accuracy((train_x, train_y), (test_x, test_y))
        0.827
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    (x, y), (tx, ty) = train, test
    y = np.asarray(y)
    search = GridSearchCV(logistic(), {"logisticregression__C": C_GRID},
                          cv=StratifiedKFold(_folds(y), shuffle=True, random_state=seed))
    return float((fit_quietly(search, x, y).predict(pooled(tx)) == np.asarray(ty)).mean())
