"""backbone: auto picks the backbone by a linear probe of the training images, and says so."""
import json

import numpy as np
import pytest

import transferkit
from transferkit.backbone_choice import offline_candidates
from transferkit.errors import TransferkitError
from transferkit.probe import pooled, probe_accuracy, probe_score

FAST = ["head.units=16", "batch_size=16", "image_size=32", "base_blocks=", "backbone=auto"]


def test_probe_scores_separable_features_high_and_noise_at_chance():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 4
    noise = rng.normal(size=(200, 64))
    signal = noise + 3 * np.eye(4)[labels] @ rng.normal(size=(4, 64))
    assert probe_score(signal, labels) > 0.9
    assert probe_score(noise, labels) < 0.45
    assert probe_accuracy((signal[:100], labels[:100]), (signal[100:], labels[100:])) > 0.9
    assert pooled(np.ones((3, 2, 2, 5))).shape == (3, 5)  # conv maps are averaged over space


def test_auto_runs_the_best_probe_and_records_every_probe(tmp_path, stripes):
    result = transferkit.run("demo_hed", strategy="feature_extraction", epochs=2, data=stripes,
                             class_names=["horizontal", "vertical"], out=tmp_path / "runs", overrides=FAST, verbose=0)
    probes = result.metrics["backbone_probe"]
    assert {(p["backbone"], p["weights"]) for p in probes} == set(offline_candidates(32))
    assert [p["probe_accuracy"] for p in probes] == sorted((p["probe_accuracy"] for p in probes), reverse=True)
    best = probes[0]
    assert (result.recipe.backbone, result.recipe.weights, result.recipe.base_blocks) == \
        (best["backbone"], best["weights"], best["base_blocks"])
    saved = transferkit.load_recipe(str(result.run_dir / "recipe.yaml"))
    assert saved.backbone == best["backbone"]  # a resumed or repeated run trains what was chosen
    assert json.loads((result.run_dir / "metrics.json").read_text())["backbone"] == best["backbone"]
    assert best["probe_accuracy"] > 0.8  # stripes are easy for any pretrained base


def test_auto_without_offline_weights_is_one_line(tmp_path, stripes, monkeypatch):
    import transferkit.backbone_choice as choice

    monkeypatch.setattr(choice, "offline_candidates", lambda size: [])
    with pytest.raises(TransferkitError, match=r"no backbone with offline weights.*transferkit\[offline\]"):
        transferkit.run("demo_hed", strategy="feature_extraction", data=stripes, class_names=["h", "v"],
                        out=tmp_path / "runs", overrides=FAST, verbose=0)
