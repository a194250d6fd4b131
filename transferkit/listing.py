"""``transferkit list`` without TensorFlow: the registries' rows from the snapshot written by
:func:`transferkit.catalog.write_snapshot` (kept equal to the registries by a test), recipes read live.

Example:
    >>> dict(listing("weights"))["none"]
    'random initialisation'
"""
import json
from pathlib import Path

from transferkit.errors import TransferkitError, did_you_mean

KINDS = ("backbones", "baselines", "strategies", "recipes", "samples", "weights")


def listing(what):
    """``(name, description)`` rows of ``what``, one of :data:`KINDS`, answered without importing TensorFlow."""
    if what == "recipes":
        from transferkit.recipes import list_recipes, load_recipe

        return [(name, load_recipe(name).description) for name in list_recipes()]
    if what not in KINDS:
        raise TransferkitError(f"unknown catalog '{what}'{did_you_mean(what, KINDS)}; choose one of: "
                               f"{', '.join(KINDS)}")
    rows = json.loads(Path(__file__).with_name("catalog_snapshot.json").read_text(encoding="utf-8"))
    return [tuple(row) for row in rows[what]]
