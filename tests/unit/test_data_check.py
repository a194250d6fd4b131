"""``transferkit data check`` and ``data preview``: the report, its exit codes, and the strict recipe key."""
import json
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from transferkit.cli import main
from transferkit.data.check import check_data, recipe_for


def _images(folder, count, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


@pytest.fixture
def messy(tmp_path):
    """train/val/test of cats (12/3/3) and dogs (4/3/3), with an empty file, a truncated PNG, a text file, and a
    training image copied into test."""
    root = tmp_path / "pets"
    for split, cats, dogs in (("train", 12, 4), ("val", 3, 3), ("test", 3, 3)):
        _images(root / split / "cats", cats, seed=len(split) * 10)
        _images(root / split / "dogs", dogs, seed=len(split) * 10 + 1)
    (root / "train" / "dogs" / "empty.jpg").write_bytes(b"")
    png = (root / "val" / "cats" / "000.png").read_bytes()
    (root / "val" / "cats" / "cut.png").write_bytes(png[: len(png) // 2])
    (root / "test" / "dogs" / "readme.jpg").write_bytes(b"not a picture")
    shutil.copy(root / "train" / "cats" / "005.png", root / "test" / "dogs" / "leak.png")
    return root


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_the_report_counts_lists_unreadable_files_duplicates_and_imbalance(messy):
    report = check_data(recipe_for(str(messy)).data)
    assert report.class_names == ("cats", "dogs")
    assert report.counts == {"train": (12, 4), "val": (3, 3), "test": (3, 4)}
    reasons = {path.split("/pets/")[1]: reason for _, path, reason in report.unreadable}
    assert reasons == {"train/dogs/empty.jpg": "empty file (0 bytes)",
                       "val/cats/cut.png": reasons["val/cats/cut.png"],
                       "test/dogs/readme.jpg": "not an image (unrecognised format)"}
    assert "truncated" in reasons["val/cats/cut.png"]
    assert report.duplicates == [[("train", "train/cats/005.png"), ("test", "test/dogs/leak.png")]]
    assert report.imbalance == 3.0 and report.class_weights == {"cats": 0.6667, "dogs": 2.0}
    assert report.problems == ["3 unreadable files", "1 image in more than one split", "class imbalance 3.0x in train"]
    text = report.format()
    assert "train/dogs/empty.jpg: empty file (0 bytes)" in text
    assert "train: train/cats/005.png = test: test/dogs/leak.png" in text
    assert "data.class_weight: auto" in text and "cats 0.6667  dogs 2" in text


def test_cli_check_exits_1_on_problems_with_json_and_0_when_clean(messy, tmp_path):
    out = _run("data", "check", str(messy), "--json")
    assert out.exit_code == 1, out.output
    report = json.loads(out.stdout)
    assert report["counts"]["test"] == {"cats": 3, "dogs": 4}
    assert {item["reason"] for item in report["unreadable"]} >= {"empty file (0 bytes)"}
    assert report["duplicates_across_splits"] == [[{"split": "train", "image": "train/cats/005.png"},
                                                   {"split": "test", "image": "test/dogs/leak.png"}]]
    assert report["class_weights"] == {"cats": 0.6667, "dogs": 2.0} and len(report["problems"]) == 3
    clean = tmp_path / "clean"
    for name, seed in (("a", 1), ("b", 2)):
        _images(clean / name, 10, seed)
    out = _run("data", "check", str(clean))
    assert out.exit_code == 0, out.output
    assert "no problems found" in out.stdout and "total" in out.stdout


def test_cli_check_of_the_embedded_sample_is_clean():
    out = _run("data", "check", "demo")
    assert out.exit_code == 0, out.output
    assert "sample photos, 10 classes" in out.stdout and "no problems found" in out.stdout


def test_cli_check_of_unprepared_tfds_offline_fails_fast_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    started = time.time()
    out = _run("data", "check", "cats_dogs")
    assert time.time() - started < 30
    assert out.exit_code == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    assert "--data-dir" in out.stderr and "TFDS_DATA_DIR" in out.stderr


def test_strict_recipe_key_stops_a_run_before_training(messy, tmp_path):
    out = _run("run", "demo_hed", "--data", str(messy), "--set", "data.strict=true", "--out", str(tmp_path / "runs"))
    assert out.exit_code == 2
    assert out.stderr.startswith("error: 3 unreadable images in train (1), val (1), test (1) of ")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_preview_writes_a_png(tmp_path):
    out = _run("data", "preview", "demo", "--out", str(tmp_path / "see.png"), "--n", "2")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "see.png").read_bytes()[:4] == b"\x89PNG" and "see.png" in out.stdout


def test_a_class_without_training_images_and_a_single_class_are_named_plainly(tmp_path):
    _images(tmp_path / "two" / "a", 12, seed=1)
    (tmp_path / "two" / "b").mkdir()
    (tmp_path / "two" / "b" / "x.jpg").write_text("not an image")
    problems = check_data(recipe_for(str(tmp_path / "two")).data).problems
    assert any("classes without images: b in train" in p for p in problems)
    assert not any("imbalance" in p for p in problems)  # no "infx"
    _images(tmp_path / "one" / "a", 12, seed=2)
    assert any("only 1 class" in p for p in check_data(recipe_for(str(tmp_path / "one")).data).problems)


def test_a_missing_folder_or_a_file_is_not_called_a_recipe(tmp_path):
    result = _run("data", "check", str(tmp_path / "nope" / "dir"))
    assert result.exit_code == 2 and f"folder not found: {tmp_path / 'nope' / 'dir'}" in result.output
    (tmp_path / "notes.py").write_text("")
    result = _run("run", "demo", "--data", str(tmp_path / "notes.py"))
    assert result.exit_code == 2 and "is a file" in result.output
