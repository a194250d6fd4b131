"""The on-disk feature cache: conv-base features computed once per backbone, weights, size and data."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np


def cache_dir():
    """Where features are cached: ``$TRANSFERKIT_CACHE/features`` (default ``~/.cache/transferkit``)."""
    root = os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit")
    return Path(root).expanduser() / "features"


def cache_key(**parts):
    """A digest of everything the features depend on.

    Example:
        >>> cache_key(backbone="vgg16", weights="imagenet", image_size=150, data="ab12", split="train")
        '5f1c...'
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_features(key, compute):
    """Return ``(features, labels)`` for ``key``: from the cache, or from ``compute()``, then cached.

    Returns also whether the cache was hit. Files are written atomically (temporary file, then rename).

    Example:
        >>> (x, y), hit = cached_features(key, lambda: extract(extractor, dataset))
    """
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return (npz["features"], npz["labels"]), True
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    features, labels = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, features=features, labels=labels)
    os.replace(tmp, path)
    return (features, labels), False


def extract(extractor, batched):
    """Run ``extractor`` over a batched ``(images, labels)`` dataset; returns ``(features, labels)``.

    Example:
        >>> features, labels = extract(extractor, batches(splits.datasets["val"], 150, 32))
    """
    features, labels = [], []
    for images, batch_labels in batched:
        features.append(np.asarray(extractor.predict_on_batch(images)))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels)
