"""compare: every strategy against the baselines on identical splits, one table, one report, reruns reused."""
import base64
import io
import json
import re
import subprocess
import sys

import numpy as np
from PIL import Image

import transferkit
from transferkit.strategies.runtime import resolve_precision

TINY = ["head.units=16", "batch_size=16", "scratch.epochs=2", "feature_extraction.epochs=4", "image_size=32"]


def test_compare_writes_a_sorted_table_and_a_self_contained_report_and_reuses_runs(tmp_path, stripes):
    kwargs = dict(strategies=["scratch", "feature_extraction"], baselines=["lenet5", "small_convnet"],
                  out=tmp_path, overrides=TINY, data=stripes, class_names=["h", "v"])
    first = transferkit.compare("demo_hed", **kwargs)
    assert [row["run"] for row in first.rows] != [] and len(first.rows) == 3
    accuracies = [row["test_accuracy"] for row in first.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert {row["run"] for row in first.rows} == {"scratch lenet5", "scratch small_convnet",
                                                   "feature_extraction vgg16"}
    table = first.table()
    assert table.splitlines()[2].split("|")[1].strip().endswith("★") and "| dtype |" in table
    for row in first.rows:
        assert row["train_images_per_s"] > 0 and row["peak_rss_mb"] > 100 and row["wall_time_s"] > 0
        assert row["precision"] == (resolve_precision("auto") or "float32")  # the recipe default, on this machine
        assert sum(map(sum, row["confusion_matrix"])) == len(stripes["test"][1])  # same test set for all
    page = (first.report_dir / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 + 3  # curves + one confusion matrix per run
    for data in images:
        picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))
        assert picture.shape[0] > 200 and picture.std() > 5
    assert "★" in page and "<pre>" in page
    markdown = (first.report_dir / "report.md").read_text()
    assert "| run |" in markdown and "![Training curves, all runs](curves.png)" in markdown
    run_dirs = {p for p in tmp_path.iterdir() if p.is_dir() and "-compare-" not in p.name}
    second = transferkit.compare("demo_hed", **kwargs)
    assert all(row["reused"] for row in second.rows)
    assert {p for p in tmp_path.iterdir() if p.is_dir() and "-compare-" not in p.name} == run_dirs
    assert [r["test_accuracy"] for r in second.rows] == accuracies


def test_compare_command_runs_every_strategy_on_the_demo_offline_and_prints_json(tmp_path):
    epochs = [f"{name}.epochs=1" for name in ("scratch", "feature_extraction", "frozen_augment", "finetune")]
    sets = [arg for setting in epochs + ["finetune.head_epochs=1", "data.per_class=[3,2,2]", "image_size=32"]
            for arg in ("--set", setting)]
    out = subprocess.run([sys.executable, "-m", "transferkit", "compare", "demo_hed", *sets, "--out", str(tmp_path),
                          "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert sorted(row["run"] for row in rows) == ["feature_extraction vgg16", "finetune vgg16",
                                                  "frozen_augment vgg16", "scratch small_convnet"]
    assert all(0 <= row["test_accuracy"] <= 1 for row in rows)
