"""What the network sees: a PNG grid of training images next to augmented copies (``transferkit data preview``)."""
from pathlib import Path

import numpy as np

from transferkit.data.augment import adapt, make_augmenter
from transferkit.data.pipeline import resize
from transferkit.data.sources import load_data
from transferkit.errors import TransferkitError


def augmented_samples(recipe, count=8, copies=5):
    """``count`` training images at the recipe's size and ``copies`` augmented versions of each, as uint8
    arrays of shape ``(count, size, size, 3)`` and ``(copies, count, size, size, 3)``.

    The images are a seeded shuffle of the train split; PCA colour is adapted on the whole split, as in training.

    Example:
        >>> originals, augmented = augmented_samples(load_recipe("demo"), count=4)
        >>> augmented.shape
        (5, 4, 32, 32, 3)
    """
    augment = make_augmenter(recipe.augment, seed=recipe.seed)
    if augment is None:
        raise TransferkitError(f"recipe '{recipe.name}' has no augmentation to preview: every augment key is off")
    splits = load_data(recipe.data, recipe.seed)
    size, mode = recipe.image_size, recipe.data.resize
    train = splits.datasets["train"].map(lambda x, y: resize(x, size, mode))
    adapt(augment, train.batch(256))
    picked = train.shuffle(min(splits.counts["train"], 512), seed=recipe.seed).take(count).batch(count)
    images = next(iter(picked))
    augmented = np.stack([augment(images, training=True).numpy() for _ in range(copies)])
    as_uint8 = lambda x: np.clip(np.round(np.asarray(x)), 0, 255).astype(np.uint8)  # noqa: E731
    return as_uint8(images), as_uint8(augmented)


def save_grid(originals, augmented, path, title=""):
    """Write a PNG: one row per image, the original first, then its augmented copies.

    Example:
        >>> save_grid(*augmented_samples(recipe), "preview.png", "demo")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(originals), 1 + len(augmented)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows + 0.4), squeeze=False)
    for row in range(rows):
        tiles = [originals[row], *(copy[row] for copy in augmented)]
        for column, tile in enumerate(tiles):
            axes[row, column].imshow(tile, interpolation="nearest")
            axes[row, column].set_axis_off()
    axes[0, 0].set_title("original", fontsize=9)
    for column in range(1, columns):
        axes[0, column].set_title(f"augmented {column}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_preview(recipe, path, count=8, copies=5):
    """:func:`augmented_samples` of ``recipe`` drawn by :func:`save_grid` into ``path``; returns the path.

    Example:
        >>> write_preview(load_recipe("cats_dogs"), "augment.png", count=4)
    """
    originals, augmented = augmented_samples(recipe, count, copies)
    title = f"{recipe.name}: training images at {recipe.image_size}x{recipe.image_size}, augmented as in training"
    return save_grid(originals, augmented, path, title)
