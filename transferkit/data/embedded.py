"""The demo sample shipped inside transferkit: real Fashion-MNIST images, so the demo runs offline."""
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from transferkit.errors import TransferkitError

SAMPLE_PATH = files("transferkit.data") / "sample" / "fashion_mnist_sample.npz"


@dataclass(frozen=True, eq=False)
class ArraySplits:
    """A labelled image data set held in memory, already cut into train, val and test.

    Each split is a tuple ``(images, labels)``: ``images`` uint8 of shape (N, H, W, 3),
    ``labels`` int64 of shape (N,) indexing ``class_names``. Compared by identity
    (``eq=False``), since numpy arrays have no single truth value.

    Example:
        >>> splits = load_sample()
        >>> images, labels = splits.train
        >>> splits.class_names[labels[0]]
        'coat'
    """

    train: tuple
    val: tuple
    test: tuple
    class_names: tuple


def load_sample():
    """Load the embedded Fashion-MNIST sample as RGB ``ArraySplits`` (gray channel repeated 3 times).

    1000 train, 300 val and 300 test images of 28x28 pixels, the same number for each of the 10 classes.

    Example:
        >>> splits = load_sample()
        >>> splits.train[0].shape, splits.train[0].dtype, len(splits.class_names)
        ((1000, 28, 28, 3), dtype('uint8'), 10)
    """
    if not SAMPLE_PATH.is_file():
        raise TransferkitError(
            f"embedded sample not found at {SAMPLE_PATH}; build it with: python data_scripts/build_sample.py"
        )
    with SAMPLE_PATH.open("rb") as f, np.load(f, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}

    def split(name):
        return np.repeat(arrays[f"x_{name}"][..., np.newaxis], 3, axis=-1), arrays[f"y_{name}"]

    return ArraySplits(
        train=split("train"),
        val=split("val"),
        test=split("test"),
        class_names=tuple(str(name) for name in arrays["class_names"]),
    )
