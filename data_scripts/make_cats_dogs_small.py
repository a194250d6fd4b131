"""Make the book's small cats-vs-dogs data set: train/ val/ test/ folders of cats/ and dogs/, 1000/500/500 per class.

The source is one of:

- the Microsoft (Kaggle) download ``kagglecatsanddogs_*.zip``, or its extracted ``PetImages/`` folder
  (``PetImages/Cat/0.jpg``, ``PetImages/Dog/0.jpg``, ...);
- the Kaggle competition's ``train.zip``, or its extracted ``train/`` folder (``cat.0.jpg``, ``dog.0.jpg``, ...);
- ``tfds``: the prepared TFDS ``cats_vs_dogs`` (``--data-dir``), in its own order, which gives the same images
  as the ``cats_dogs`` recipe's ``per_class: [1000, 500, 500]``.

Files are taken in numeric order (cat 0, 1, 2, ... as the book does) and copied byte for byte to
``OUT/train/cats/cat.0.jpg`` and so on; corrupt ones (empty, truncated, not an image: the Microsoft zip holds
a few) are skipped and the next ones used. ``transferkit run cats_dogs --data OUT`` then trains on the folders.

Example:
    python data_scripts/make_cats_dogs_small.py ~/Downloads/kagglecatsanddogs_5340.zip --out data/cats_and_dogs_small
    python data_scripts/make_cats_dogs_small.py PetImages --out data/small --per-class 100 50 50
    python data_scripts/make_cats_dogs_small.py tfds --data-dir /data/tfds --out data/cats_and_dogs_small
"""
import argparse
import re
import sys
import zipfile
from pathlib import Path, PurePosixPath

CLASSES = {"cat": "cats", "dog": "dogs"}
SPLITS = ("train", "val", "test")


def classify(name):
    """``(class folder, number)`` of a file in either Kaggle layout, or None for anything else.

    Example:
        >>> classify("PetImages/Dog/12.jpg"), classify("train/cat.7.jpg"), classify("PetImages/Cat/Thumbs.db")
        (('dogs', 12), ('cats', 7), None)
    """
    path = PurePosixPath(name)
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return None
    found = re.fullmatch(r"(cat|dog)\.(\d+)", path.stem.lower())
    if found:
        return CLASSES[found.group(1)], int(found.group(2))
    parent = path.parent.name.lower().rstrip("s")
    if parent in CLASSES and path.stem.isdigit():
        return CLASSES[parent], int(path.stem)
    return None


def kaggle_files(source):
    """``{class folder: [(number, read_bytes), ...]}`` in numeric order, from a zip or an extracted folder."""
    source = Path(source)
    if zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        entries = [(name, lambda name=name: archive.read(name)) for name in archive.namelist()]
    elif source.is_dir():
        entries = [(p.relative_to(source).as_posix(), p.read_bytes) for p in source.rglob("*") if p.is_file()]
    else:
        raise SystemExit(f"error: {source} is neither a zip file nor a folder")
    files = {name: [] for name in CLASSES.values()}
    for name, read in entries:
        found = classify(name)
        if found:
            files[found[0]].append((found[1], read))
    return {name: sorted(found, key=lambda item: item[0]) for name, found in files.items()}


def tfds_files(data_dir):
    """The same mapping from the prepared TFDS ``cats_vs_dogs``, in its order, as encoded JPEG bytes."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("cats_vs_dogs", data_dir=data_dir)
    if not builder.data_path.joinpath("dataset_info.json").exists():
        raise SystemExit(f"error: tfds cats_vs_dogs is not prepared in {builder.data_dir}: prepare it with "
                         f"data_scripts/prepare_offline.py cats_dogs on a connected machine, or pass --data-dir")
    names = builder.info.features["label"].names
    records = builder.as_dataset(split="train", shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    files = {name: [] for name in CLASSES.values()}
    for number, record in enumerate(records.as_numpy_iterator()):
        files[CLASSES[names[record["label"]]]].append((number, lambda data=record["image"]: data))
    return files


def make_small(files, out, per_class=(1000, 500, 500)):
    """Copy the first good ``sum(per_class)`` files of each class into ``out/{train,val,test}/{cats,dogs}``.

    Returns ``{class folder: [skipped (number, reason), ...]}``.

    Example:
        >>> make_small(kaggle_files("PetImages"), Path("small"), (10, 5, 5))
        {'cats': [], 'dogs': [(11702, 'empty file (0 bytes)')]}
    """
    from transferkit.data.images import check_bytes

    out = Path(out)
    if any((out / split).exists() for split in SPLITS):
        raise SystemExit(f"error: {out} already has train/, val/ or test/: remove them or choose another --out")
    wanted = sum(per_class)
    chosen, skipped = {}, {}
    for name, candidates in files.items():
        chosen[name], skipped[name] = [], []
        for number, read in candidates:
            data = read()
            problem = check_bytes(data).error
            if problem:
                skipped[name].append((number, problem))
            else:
                chosen[name].append((number, data))
            if len(chosen[name]) == wanted:
                break
        if len(chosen[name]) < wanted:
            raise SystemExit(f"error: only {len(chosen[name])} good {name} images, {wanted} wanted "
                             f"({len(skipped[name])} skipped as corrupt)")
    for name, good in chosen.items():
        start = 0
        for split, count in zip(SPLITS, per_class):
            folder = out / split / name
            folder.mkdir(parents=True)
            for number, data in good[start:start + count]:
                (folder / f"{name[:-1]}.{number}.jpg").write_bytes(data)
            start += count
    return skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="kagglecatsanddogs_*.zip, PetImages/, Kaggle train.zip or train/, or tfds")
    parser.add_argument("--out", default="cats_and_dogs_small", help="output folder (default: %(default)s)")
    parser.add_argument("--per-class", nargs=3, type=int, default=[1000, 500, 500], metavar=("TRAIN", "VAL", "TEST"),
                        help="images per class in each split (default: 1000 500 500)")
    parser.add_argument("--data-dir", help="prepared tfds data, for the tfds source (default: TFDS_DATA_DIR)")
    args = parser.parse_args(argv)
    files = tfds_files(args.data_dir) if args.source == "tfds" else kaggle_files(args.source)
    skipped = make_small(files, args.out, args.per_class)
    for name, problems in skipped.items():
        for number, reason in problems:
            print(f"skipped {name[:-1]} {number}: {reason}", file=sys.stderr)
    total = sum(args.per_class)
    print(f"wrote {args.out}: {' / '.join(map(str, args.per_class))} train / val / test images per class "
          f"({total * len(files)} in all); train with: transferkit run cats_dogs --data {args.out}")


if __name__ == "__main__":
    main()
