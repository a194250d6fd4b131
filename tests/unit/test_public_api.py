"""The package's API as a user meets it: names reachable from ``import transferkit``, forgiving arguments."""
import json
import subprocess
import sys

import pytest

import transferkit
from transferkit.catalog import catalog
from transferkit.errors import TransferkitError

NAMES_CHILD = """
import json, sys
import transferkit
grad_cam, export = transferkit.explain.grad_cam, transferkit.export
import transferkit.comparison
import transferkit.exporters  # importing the modules does not hide the functions
print(json.dumps({"grad_cam": f"{grad_cam.__module__}.{grad_cam.__name__}",
                  "export": f"{export.__module__}.{export.__name__}",
                  "still": transferkit.export is export and callable(transferkit.compare),
                  "listed": [name for name in ("explain", "export") if name in dir(transferkit)]}))
"""


def test_grad_cam_and_export_are_reachable_from_import_transferkit_alone():
    out = subprocess.run([sys.executable, "-c", NAMES_CHILD], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "grad_cam": "transferkit.explain.grad_cam", "export": "transferkit.exporters.export", "still": True,
        "listed": ["explain", "export"]}


def test_catalog_refuses_an_unknown_kind_naming_the_valid_ones():
    with pytest.raises(TransferkitError, match=r"^unknown catalog 'backbone' \(did you mean 'backbones'\?\); choose "
                                               r"one of: backbones, baselines, recipes, samples, strategies, weights$"):
        catalog("backbone")
    assert dict(catalog("weights"))["none"] == "random initialisation"
    assert "vgg16" in dict(catalog("backbones")) and "lenet5" in dict(catalog("baselines"))
    assert "photos" in dict(catalog("samples"))


def test_one_override_string_is_one_override(tmp_path, stripes):
    assert transferkit.load_recipe("demo_hed", overrides="head.units=64").head.units == 64
    with pytest.raises(TransferkitError, match=r"unknown key 'head\.unitz' in head \(did you mean 'units'\?\)"):
        transferkit.run("demo_hed", overrides="head.unitz=64", data_dir=tmp_path, out=tmp_path)
    result = transferkit.run("demo_hed", strategy="scratch", overrides="scratch.baseline=lenet5", image_size=32, epochs=1,
                             data=stripes, class_names=["horizontal", "vertical"], out=tmp_path / "runs", verbose=0)
    assert result.recipe.scratch.baseline == result.metrics["baseline"] == "lenet5"


def test_the_list_snapshot_is_the_registries():
    from transferkit.catalog import SNAPSHOT_KINDS
    from transferkit.listing import listing

    for kind in SNAPSHOT_KINDS:
        assert listing(kind) == [tuple(row) for row in catalog(kind)], \
            f"transferkit/catalog_snapshot.json is stale: python -m transferkit.catalog rewrites it ({kind})"
    assert listing("recipes") == catalog("recipes")
