"""transferkit inspect (top losses, most confused) on a run trained on a folder, and transferkit data audit
(near-duplicates across splits, label issues) on folders with planted problems."""
import csv
import importlib.util
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import transferkit
from conftest import tiny_run
from transferkit.cli import main
from transferkit.inspection import losses
from transferkit.predict import load
from transferkit.runs import load_predictions

NAMES = ("horizontal", "vertical")  # the stripe photos' classes; the audit's blobs reuse the names


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, photos):
    """A short feature-extraction run on the folder of stripe PNGs (so its recipe re-loads its test split)."""
    return tiny_run(tmp_path_factory.mktemp("inspect"), str(photos), epochs=2, head_units=8)


def test_inspect_shows_the_test_images_with_the_highest_loss_and_the_confused_pairs(folder_run, photos, tmp_path):
    out = tmp_path / "inspect"
    result = CliRunner().invoke(main, ["inspect", str(folder_run.run_dir), "--top", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    kept = load_predictions(folder_run.run_dir)
    labels, probabilities = kept["test_labels"], kept["test_probabilities"]
    loss = losses(labels, probabilities)
    rows = list(csv.DictReader((out / "top_losses.csv").open()))
    assert len(rows) == 4
    assert int(rows[0]["index"]) == int(np.argmax(loss))
    assert [float(r["loss"]) for r in rows] == pytest.approx(np.sort(loss)[::-1][:4], abs=1e-3)
    # the file named is the image with that loss: the model's answer on it is the kept one
    worst = photos / rows[0]["file"]
    assert worst.parent.name == rows[0]["actual"]
    answer = load(folder_run.run_dir).predict(str(worst))[0]
    assert answer == pytest.approx(probabilities[int(rows[0]["index"])], abs=1e-3)
    assert f"loss {float(rows[0]['loss']):.3f}  {rows[0]['file']}" in result.output
    confused = list(csv.DictReader((out / "confused.csv").open()))
    wrong = probabilities.argmax(1) != labels
    assert sum(int(r["count"]) for r in confused) == int(wrong.sum())
    for name in ("top_losses.png", "confused.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()  # self-contained: both pictures inside, the worst file listed
    assert page.count("data:image/png;base64,") == 2 and rows[0]["file"] in page and "src=\"http" not in page


def test_inspect_refuses_a_run_whose_test_images_changed(folder_run, photos, tmp_path):
    moved = tmp_path / "photos"
    shutil.copytree(photos, moved)
    run_dir = tmp_path / folder_run.run_dir.name
    shutil.copytree(folder_run.run_dir, run_dir)
    recipe = (run_dir / "recipe.yaml").read_text().replace(str(photos.resolve()), str(moved))
    (run_dir / "recipe.yaml").write_text(recipe)
    for path in moved.rglob("*.png"):  # same files, same labels, other pixels
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)
    result = CliRunner().invoke(main, ["inspect", str(run_dir)])
    assert result.exit_code == 2
    assert result.output.startswith("error: the model's answers on the re-loaded test images differ from "
                                    "predictions.npz")


def blob_images(n, size=32, seed=0):
    """``n`` RGB uint8 images, each its own smooth grey pattern (a 4 x 4 noise field upsampled) plus red (class 0)
    or blue (class 1): the classes separate at a glance, and no two images look alike."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        field = Image.fromarray(rng.uniform(0, 255, (4, 4)).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        tint = np.array([110.0, 0, 0] if label == 0 else [0, 0, 110.0])
        images[i] = np.clip(np.asarray(field, np.float32)[..., None] * 0.55 + tint, 0, 255).astype(np.uint8)
    return images, labels


def _split_folder(root, seed=0, per_split=(40, 8, 16)):
    """train/ val/ test/ folders of blob PNGs; returns ``{split: [(path, label)]}``."""
    written = {}
    for split, count, offset in zip(("train", "val", "test"), per_split, (0, 100, 200)):
        images, labels = blob_images(count, seed=seed + offset)
        written[split] = []
        for i, (image, label) in enumerate(zip(images, labels)):
            path = root / split / NAMES[label] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
            written[split].append((path, label))
    return written


@pytest.mark.skipif(importlib.util.find_spec("cleanlab") is None, reason="cleanlab (transferkit[audit]) not installed")
def test_audit_finds_a_re_encoded_test_image_in_train_and_flipped_labels(tmp_path):
    root = tmp_path / "stripes"
    written = _split_folder(root)
    original = written["test"][5][0]
    copy = root / "train" / original.parent.name / "copy.jpg"
    Image.open(original).resize((40, 40), Image.BICUBIC).save(copy, quality=70)
    flipped = []
    for path, label in written["train"][:3] + written["val"][:1]:  # 4 of 64 labels moved to the other class
        moved = path.parent.parent / NAMES[1 - label] / f"flipped-{path.name}"
        path.rename(moved)
        flipped.append(str(moved.relative_to(root)))
    out = tmp_path / "audit"
    result = CliRunner().invoke(main, ["data", "audit", str(root), "--out", str(out), "--set", "image_size=32"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "audit.csv").open()))
    duplicates = [(r["file"], r["suggestion"]) for r in rows if r["kind"] == "duplicate"]
    assert (str(original.relative_to(root)), str(copy.relative_to(root))) in duplicates
    assert len(duplicates) <= 2
    issues = {r["file"]: r for r in rows if r["kind"] == "label"}
    assert len(set(flipped) & set(issues)) >= 3
    assert len(issues) <= 6
    for name in set(flipped) & set(issues):
        assert issues[name]["suggestion"] != issues[name]["label"]
    assert "near-duplicates across splits: " in result.output and (out / "audit.png").read_bytes()[:4] == b"\x89PNG"


def test_audit_without_cleanlab_says_which_extra_to_install(monkeypatch, photos):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cleanlab" else real(name, *a))
    result = CliRunner().invoke(main, ["data", "audit", str(photos)])
    assert result.exit_code == 2
    assert result.output == "error: data audit needs cleanlab: pip install 'transferkit[audit]'\n"


def test_split_names_follow_the_folder_files(photos):
    splits = transferkit.load_data(transferkit.load_recipe("folder", overrides=[f"data.path={photos}"]).data)
    names = splits.names("test")
    labels = [int(label) for _, label in splits.datasets["test"].as_numpy_iterator()]
    assert len(names) == splits.counts["test"] and all(NAMES[y] == n.split("/")[0] for n, y in zip(names, labels))
