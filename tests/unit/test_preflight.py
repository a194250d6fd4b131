"""Mistakes in what to build are refused before any data is read, and leave no run folder behind."""
import numpy as np
import pytest
from PIL import Image

import transferkit
from transferkit.errors import TransferkitError


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "resnet"}, "did you mean 'resnet50'"),
    ({"backbone": "resnet50"}, "'hed-bsds500' exist only for vgg16"),
    ({"image_size": 16}, "below vgg16's minimum of 32"),
    ({"strategy": "scratch", "overrides": ["scratch.baseline=alexnet"], "image_size": 32}, "at least 67x67"),
    ({"strategy": "scratch", "overrides": ["scratch.baseline=lenet"]}, "did you mean 'lenet5'"),
])
def test_unbuildable_recipes_stop_before_the_data_is_read(tmp_path, kwargs, message):
    with pytest.raises(TransferkitError, match=message):
        transferkit.run("demo_hed", data=tmp_path / "no such folder", out=tmp_path / "runs", verbose=0, **kwargs)
    assert not (tmp_path / "runs").exists()


def test_compare_names_a_misspelt_backbone_and_refuses_empty_lists(tmp_path):
    with pytest.raises(TransferkitError, match="unknown backbone 'resnet'"):
        transferkit.compare("demo_hed", ["finetune"], backbones=["resnet"], out=tmp_path)
    with pytest.raises(TransferkitError, match="no strategies given"):
        transferkit.compare("demo_hed", [], out=tmp_path)


def test_a_relative_data_folder_is_saved_absolute(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(tmp_path / "photos" / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    result = transferkit.run("demo_hed", strategy="feature_extraction", data="photos", out="runs", verbose=0, epochs=1,
                             overrides=["image_size=32", "base_blocks=1", "head.units=8"])
    assert result.recipe.data.path == str(tmp_path / "photos")
    assert result.recipe.data.per_class is None  # the demo's pick from the sample does not apply to a folder
    assert transferkit.load_recipe(str(result.run_dir / "recipe.yaml")).data.path == str(tmp_path / "photos")


def test_summary_warns_of_a_class_that_validation_never_shows(stripes):
    from transferkit.data.sources import from_arrays
    from transferkit.summary import run_summary

    x, y = stripes["val"]
    splits = from_arrays({**stripes, "val": (x[y == 0], y[y == 0])}, ["horizontal", "vertical"])
    lines, warnings = run_summary(transferkit.load_recipe("demo"), splits, "float32")
    assert lines[0].startswith("data      demo: 2 classes; train 96 (48 per class), val 16, test 64")
    assert warnings == ["warning: no val images of class 'vertical': its val accuracy cannot be measured"]
    _, warnings = run_summary(transferkit.load_recipe("demo", ["jit_compile=true", "deterministic=true"]), splits,
                              "float32")
    assert warnings[-1].startswith("warning: jit_compile: true changes nothing with deterministic: true")


def test_a_set_in_a_section_the_strategy_does_not_use_is_named(tmp_path, capsys):
    from transferkit.api import unused_overrides

    recipe = transferkit.load_recipe("demo")
    assert unused_overrides(recipe, ["scratch.baseline=lenet5", "finetune.epochs=2", "head.units=8"]) == [
        "warning: --set scratch.baseline=lenet5 changes nothing: the finetune strategy does not use the scratch section"]
