"""Build transferkit's embedded demo sample: a small stratified subset of Fashion-MNIST.

Reads the IDX files of Debian's ``dataset-fashion-mnist`` package and writes one
``.npz`` with ``x_train, y_train, x_val, y_val, x_test, y_test`` (uint8 images of
shape (N, 28, 28), int64 labels) and ``class_names``. Train and val come from the
Fashion-MNIST train file (distinct indices), test from the t10k file; Fashion-MNIST
has no exact duplicate images within or across its two files, so no image appears in
two splits (tests/unit/test_embedded_sample.py checks the shipped file).

Example:
    python data_scripts/build_sample.py                        # 100/30/30 per class, seed 0
    python data_scripts/build_sample.py --per-class 5 2 2 --seed 1 --out /tmp/tiny.npz
"""
import argparse
import gzip
from pathlib import Path

import numpy as np

CLASS_NAMES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "transferkit" / "data" / "sample" / "fashion_mnist_sample.npz"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SOURCE_FILES = [f"{prefix}-{kind}-ubyte.gz" for prefix in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]


def read_idx(path, magic):
    """Read a gzipped IDX file of unsigned bytes into an array shaped by its header.

    Example:
        >>> read_idx(DEFAULT_SOURCE / "t10k-labels-idx1-ubyte.gz", LABELS_MAGIC).shape
        (10000,)
    """
    with gzip.open(path, "rb") as f:
        data = f.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise SystemExit(f"{path}: not an IDX file of the expected kind (magic {found}, expected {magic})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_split(source, prefix):
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the ``train`` or ``t10k`` files in ``source``."""
    images = read_idx(source / f"{prefix}-images-idx3-ubyte.gz", IMAGES_MAGIC)
    labels = read_idx(source / f"{prefix}-labels-idx1-ubyte.gz", LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise SystemExit(f"{source}/{prefix}: {len(images)} images but {len(labels)} labels")
    return images, labels


def pick(rng, labels, counts, file_name):
    """Per class, draw sum(counts) distinct indices and cut them into one index array per count.

    Each returned array is shuffled, so classes are interleaved rather than in blocks.
    """
    parts = [[] for _ in counts]
    for label, name in enumerate(CLASS_NAMES):
        candidates = np.flatnonzero(labels == label)
        if len(candidates) < sum(counts):
            raise SystemExit(
                f"class '{name}' has {len(candidates)} images in the {file_name} file, "
                f"{sum(counts)} requested"
            )
        chosen = rng.choice(candidates, size=sum(counts), replace=False)
        for part, chunk in zip(parts, np.split(chosen, np.cumsum(counts)[:-1])):
            part.append(chunk)
    return [rng.permutation(np.concatenate(part)) for part in parts]


def build(source, per_class, seed):
    """The sample as a dict of arrays, ready for ``np.savez_compressed``.

    Example:
        >>> arrays = build(DEFAULT_SOURCE, (5, 2, 2), seed=0)
        >>> arrays["x_train"].shape, arrays["y_test"].dtype
        ((50, 28, 28), dtype('int64'))
    """
    missing = [name for name in SOURCE_FILES if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"Fashion-MNIST not found ({source}/{missing[0]} is missing); "
                         "install it with: apt-get install dataset-fashion-mnist")
    n_train, n_val, n_test = per_class
    train_images, train_labels = read_split(source, "train")
    test_images, test_labels = read_split(source, "t10k")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = pick(rng, train_labels, (n_train, n_val), "train")
    (test_idx,) = pick(rng, test_labels, (n_test,), "t10k")
    return {
        "x_train": train_images[train_idx], "y_train": train_labels[train_idx],
        "x_val": train_images[val_idx], "y_val": train_labels[val_idx],
        "x_test": test_images[test_idx], "y_test": test_labels[test_idx],
        "class_names": np.array(CLASS_NAMES),
    }


def main(argv=None):
    """Parse ``argv``, build the sample and write it; prints the output path, its size and the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", nargs=3, type=int, default=(100, 30, 30), metavar=("TRAIN", "VAL", "TEST"),
                        help="images per class in each split (default: 100 30 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the numpy Generator (default: 0)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"folder with the Fashion-MNIST IDX .gz files (default: {DEFAULT_SOURCE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz (default: the packaged sample)")
    args = parser.parse_args(argv)
    if any(n < 0 for n in args.per_class):
        parser.error("--per-class counts must be >= 0")

    arrays = build(args.source, args.per_class, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    counts = ", ".join(f"{split} {len(arrays['y_' + split])}" for split in ("train", "val", "test"))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {counts} images over {len(CLASS_NAMES)} classes")


if __name__ == "__main__":
    main()
