"""Grad-CAM is tested for meaning: the evidence it points at is where the class-deciding patch is."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import transferkit
from conftest import cli as _cli
from transferkit.explain import activations, conv_layers, filter_patterns, grad_cam, overlay

SIZE, PATCH = 64, 16


def patch_images(n, seed):
    """Grey noise with one 16x16 stripe patch at a random place: horizontal stripes = class 0, vertical = 1."""
    rng = np.random.default_rng(seed)
    images = np.clip(rng.normal(120, 15, (n, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    labels, boxes = np.arange(n) % 2, []
    stripes = (np.arange(PATCH) // 2 % 2 * 200 + 30).astype(np.uint8)
    for i, label in enumerate(labels):
        top, left = rng.integers(0, SIZE - PATCH, 2)
        patch = np.tile(stripes[:, None], (1, PATCH)) if label == 0 else np.tile(stripes[None, :], (PATCH, 1))
        images[i, top:top + PATCH, left:left + PATCH] = patch[..., None]
        boxes.append((top, left))
    return images, labels, boxes


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    x, y, _ = patch_images(160, seed=1)
    xv, yv, _ = patch_images(40, seed=2)
    result = transferkit.run("demo_hed", strategy="feature_extraction", image_size=SIZE, epochs=12, verbose=0,
                             data={"train": (x, y), "val": (xv, yv), "test": (xv, yv)}, class_names=["h", "v"],
                             out=tmp_path_factory.mktemp("runs"), overrides=["base_blocks=3", "head.pooling=avg"])
    assert result.metrics["test_accuracy"] >= 0.9
    return result


@pytest.fixture(scope="module")
def patch_model(patch_run):
    return patch_run.model


def test_grad_cam_peaks_on_the_patch_that_decides_the_class(patch_model):
    images, labels, boxes = patch_images(30, seed=3)
    hits = 0
    for image, label, (top, left) in zip(images, labels, boxes):
        heatmap, probabilities = grad_cam(patch_model, image, class_index=int(label))
        assert heatmap.shape == (16, 16) and heatmap.max() == pytest.approx(1.0)
        full = tf.image.resize(heatmap[..., None], (SIZE, SIZE)).numpy()[..., 0]
        row, col = np.unravel_index(np.argmax(full), full.shape)
        hits += (top - 4 <= row < top + PATCH + 4) and (left - 4 <= col < left + PATCH + 4)
    assert hits >= 0.8 * len(images), f"the heatmap peak was on the patch for {hits} of {len(images)} images"


def test_overlay_activations_and_filters(patch_model):
    image = patch_images(1, seed=4)[0][0]
    heatmap, _ = grad_cam(patch_model, image)
    shown = overlay(image, heatmap)
    assert shown.shape == image.shape and shown.dtype == np.uint8 and not np.array_equal(shown, image)
    names = conv_layers(patch_model)
    assert names[0] == "block1_conv1" and names[-1] == "block3_conv3"
    maps = activations(patch_model, image, ["block1_conv1", "block3_conv3"])
    assert maps["block1_conv1"].shape == (64, 64, 64) and maps["block3_conv3"].shape == (16, 16, 256)
    patterns = filter_patterns(patch_model, "block1_conv1", filters=4, steps=5)
    assert patterns.shape == (4, 64, 64, 3) and patterns.dtype == np.uint8
    assert len({p.tobytes() for p in patterns}) == 4  # each filter wants something else


def test_explain_and_visualize_commands_write_pictures(patch_run, tmp_path):
    image = tmp_path / "sample.png"
    Image.fromarray(patch_images(1, seed=5)[0][0]).save(image)
    out = _cli("explain", str(patch_run.run_dir), str(image), "--class", "v", "--out", "cam.png", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    picture = np.asarray(Image.open(tmp_path / "cam.png"))
    assert picture.shape[0] > 100 and picture.std() > 10
    out = _cli("visualize", "activations", str(patch_run.run_dir), str(image), "--layers", "block1_conv1,block2_conv1",
               "--out", "maps", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["sample.block1_conv1.png",
                                                                      "sample.block2_conv1.png"]
    out = _cli("visualize", "filters", str(patch_run.run_dir), "--layer", "block1_conv1", "--filters", "4",
               "--steps", "3", "--out", "filters.png", cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "filters.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--class", "w"], "unknown class 'w'"),
    (["--layer", "block9_conv1"], "no conv layer 'block9_conv1'"),
])
def test_explain_mistakes_get_one_line(patch_run, tmp_path, args, message):
    image = tmp_path / "sample.png"
    Image.fromarray(patch_images(1, seed=5)[0][0]).save(image)
    out = _cli("explain", str(patch_run.run_dir), str(image), *args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_explain_a_file_that_is_not_an_image(patch_run, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    out = _cli("explain", str(patch_run.run_dir), str(tmp_path / "notes.png"), cwd=tmp_path)
    assert out.returncode == 2 and "cannot read" in out.stderr and "Traceback" not in out.stderr
