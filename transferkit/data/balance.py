"""Class balance: the class weights that make every class count the same in the loss."""
from transferkit.errors import TransferkitError, did_you_mean


def balanced_weights(counts):
    """``n_samples / (n_classes * count_c)`` per class (scikit-learn's "balanced"); 1 for an empty class.

    Example:
        >>> balanced_weights((300, 100))
        (0.6667, 2.0)
    """
    total, classes = sum(counts), len(counts)
    return tuple(round(total / (classes * n), 4) if n else 1.0 for n in counts)


def class_weights(setting, class_names, counts=None):
    """A recipe's ``data.class_weight`` as the ``{class index: weight}`` that Keras ``fit`` takes, or None.

    ``setting`` is ``"none"``, ``"auto"`` (:func:`balanced_weights` of the training ``counts``) or a mapping
    of class name, or index, to weight; classes it leaves out weigh 1.

    Example:
        >>> class_weights({"dog": 2}, ("cat", "dog"))
        {0: 1.0, 1: 2.0}
        >>> class_weights("auto", ("cat", "dog"), (300, 100))
        {0: 0.6667, 1: 2.0}
    """
    if setting == "none":
        return None
    if setting == "auto":
        return dict(enumerate(balanced_weights(counts)))
    weights = dict.fromkeys(range(len(class_names)), 1.0)
    for key, weight in setting.items():
        if str(key) in class_names:
            weights[class_names.index(str(key))] = float(weight)
        elif str(key).isdigit() and int(key) < len(class_names):
            weights[int(key)] = float(weight)
        else:
            raise TransferkitError(f"data.class_weight names an unknown class '{key}'"
                                   f"{did_you_mean(key, class_names)}; classes: {', '.join(class_names)}")
    return weights
