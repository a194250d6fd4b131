"""The package's API as a user meets it: names reachable from ``import transferkit``, forgiving arguments."""
import pytest

from transferkit.catalog import catalog
from transferkit.errors import TransferkitError


def test_catalog_refuses_an_unknown_kind_naming_the_valid_ones():
    with pytest.raises(TransferkitError, match=r"^unknown catalog 'backbone' \(did you mean 'backbones'\?\); "
                                               r"choose one of: backbones, baselines, recipes, strategies, weights$"):
        catalog("backbone")
    assert dict(catalog("weights"))["none"] == "random initialisation"
    assert "vgg16" in dict(catalog("backbones")) and "lenet5" in dict(catalog("baselines"))
