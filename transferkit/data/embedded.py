"""The samples shipped inside transferkit, so the demos run offline: real Fashion-MNIST images, and ten free
photos cut into tiles."""
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.registry import Registry

SAMPLE_PATH = files("transferkit.data") / "sample" / "fashion_mnist_sample.npz"
PHOTOS_DIR = files("transferkit.data") / "sample" / "photos"
SAMPLES = Registry("embedded sample")  # data.name of ``source: sample`` -> a loader of ArraySplits
# split -> (band of each photo's width it is cut from, tiles per class); the bands do not overlap
PHOTO_BANDS = {"train": ((0.0, 0.5), 20), "val": ((0.5, 0.7), 20), "test": ((0.7, 1.0), 30)}


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


@SAMPLES.register("fashion_mnist")
def load_sample():
    """Fashion-MNIST (MIT), 10 classes of garments, 28 px gray as RGB: 100 train, 30 val, 30 test per class.

    Loaded as ``ArraySplits`` (1000 train, 300 val, 300 test), the gray channel repeated 3 times.

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


def photo_tiles(photo, band, count, side, seed):
    """``count`` square tiles of ``side`` pixels cut at random from the ``band`` (start, stop fractions of the
    width) of ``photo`` (H, W, 3 uint8), skipping nearly flat tiles (pixel spread under 12 of 255).

    Example:
        >>> photo = np.random.default_rng(0).integers(0, 255, (60, 100, 3), dtype=np.uint8)
        >>> photo_tiles(photo, (0.0, 0.5), 4, 20, seed=1).shape
        (4, 20, 20, 3)
    """
    rng = np.random.default_rng(seed)
    height, width = photo.shape[:2]
    lo, hi = int(band[0] * width), int(band[1] * width) - side
    tiles = []
    for _ in range(100 * count):
        top, left = rng.integers(0, height - side + 1), rng.integers(lo, hi + 1)
        tile = photo[top:top + side, left:left + side]
        if tile.std() >= 12:
            tiles.append(tile)
            if len(tiles) == count:
                return np.stack(tiles)
    raise TransferkitError(f"could not cut {count} tiles with detail from band {band} of a {width}x{height} photo")


@SAMPLES.register("photos")
def load_photos():
    """Ten free photos from scikit-image cut into 64 px tiles, a class per photo: 20 train, 20 val, 30 test each.

    Loaded as ``ArraySplits``: a cat, coffee, an astronaut, a rocket, galaxies, a retina, tissue, brick, grass,
    gravel.

    Tiles are a sixth of each photo's short side (64x64 pixels), cut at fixed random places: 20 training tiles
    per class from the left half of the photo, 20 validation tiles from the next fifth, 30 test tiles from the
    last 30 %, so no pixel is in two splits and test tiles show parts of the photo training never saw.
    The photos and their licences: ``transferkit/data/sample/photos/`` (built by data_scripts/build_photos.py).

    Example:
        >>> splits = load_photos()
        >>> splits.train[0].shape, splits.class_names[:3]
        ((200, 64, 64, 3), ('astronaut', 'brick', 'cat'))
    """
    from PIL import Image

    paths = sorted(path for path in PHOTOS_DIR.iterdir() if path.name.endswith(".jpg")) if PHOTOS_DIR.is_dir() else []
    if not paths:
        raise TransferkitError(f"embedded photos not found in {PHOTOS_DIR}; build them with: "
                               "python data_scripts/build_photos.py")
    splits = {name: ([], []) for name in PHOTO_BANDS}
    for label, path in enumerate(paths):
        with path.open("rb") as f:
            photo = np.asarray(Image.open(f).convert("RGB"))
        side = min(photo.shape[:2]) // 6
        for index, (name, (band, count)) in enumerate(PHOTO_BANDS.items()):
            splits[name][0].append(photo_tiles(photo, band, count, side, seed=[index, label]))
            splits[name][1].append(np.full(count, label, np.int64))
    return ArraySplits(**{name: (np.concatenate(x), np.concatenate(y)) for name, (x, y) in splits.items()},
                       class_names=tuple(path.name[:-4] for path in paths))
