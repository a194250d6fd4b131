"""compare: every strategy against the baselines on identical splits, one table, one report, reruns reused."""
import base64
import io
import json
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
from PIL import Image

import transferkit
from conftest import cli
from transferkit.recipes import load_recipe
from transferkit.runs import load_predictions
from transferkit.stats import discordant, mcnemar_exact, right_of, wilson_interval
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
    assert table.splitlines()[2].split("|")[1].strip().endswith("★") == first.winner and "| dtype |" in table
    best = load_predictions(first.rows[0]["run_dir"])
    for row in first.rows:
        assert row["test_interval"] == list(wilson_interval(*right_of(load_predictions(row["run_dir"]))))
        assert row["test_interval"][0] <= row["test_accuracy"] <= row["test_interval"][1]
    assert [row["p_vs_best"] for row in first.rows[1:]] == [
        mcnemar_exact(*discordant(best, load_predictions(row["run_dir"]))) for row in first.rows[1:]]
    assert first.winner == all(row["p_vs_best"] < 0.05 for row in first.rows[1:])
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
    assert ("★" in page) == first.winner and html_escape(first.verdict()) in page
    for row in first.rows:  # every run folder, with its whole resolved recipe collapsed
        recipe_yaml = (Path(row["run_dir"]) / "recipe.yaml").read_text()
        assert f"<code>{row['run_dir']}</code>" in page and f"<pre>{html_escape(recipe_yaml)}</pre></details>" in page
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
    out = cli("compare", "demo_hed", *sets, "--out", tmp_path, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert sorted(row["run"] for row in rows) == ["feature_extraction vgg16", "finetune vgg16",
                                                  "frozen_augment vgg16", "scratch small_convnet"]
    assert all(0 <= row["test_accuracy"] <= 1 for row in rows)
    assert rows[0]["p_vs_best"] is None and all(row["p_vs_best"] is not None for row in rows[1:])
    assert all(row["test_interval"][0] <= row["test_accuracy"] <= row["test_interval"][1] for row in rows)


def _printed_table(stdout):
    """The rows of the table compare printed, as dicts by column title."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = []
    for line in lines[2:]:
        if line.startswith("| variant |"):
            break
        table.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return table


def test_compare_with_two_seeds_prints_the_intervals_and_p_values_of_the_runs_predictions(tmp_path, photos):
    sets = ["image_size=32", "batch_size=16", "head.units=16", "scratch.epochs=2", "feature_extraction.epochs=2"]
    out = cli("compare", "demo_hed", "--data", photos, "--strategies", "scratch,feature_extraction", "--baselines",
              "lenet5", "--seeds", "2", *[arg for setting in sets for arg in ("--set", setting)], "--out", tmp_path,
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = _printed_table(out.stdout)
    assert sorted(row["run"].rstrip(" ★") for row in table) == [
        "feature_extraction vgg16 seed 42", "feature_extraction vgg16 seed 43", "scratch lenet5 seed 42",
        "scratch lenet5 seed 43"]
    report = Path(re.search(r"report: (\S+)report.html", out.stdout).group(1))
    run_dirs = dict(re.findall(r"^- (.+?): `(.+?)`", (report / "report.md").read_text(), re.M))
    answers = [load_predictions(run_dirs[row["run"].rstrip(" ★")]) for row in table]
    for row, answer in zip(table, answers):  # same test images for every seed: the split stayed the first seed's
        low, high = wilson_interval(*right_of(answer))
        assert row["95% interval"] == f"{low:.3f}-{high:.3f}"
        assert np.array_equal(answer["test_labels"], answers[0]["test_labels"])
    p_values = [mcnemar_exact(*discordant(answers[0], answer)) for answer in answers[1:]]
    assert [row["p vs best"] for row in table] == ["-"] + ["<0.001" if p < 0.001 else f"{p:.3f}" for p in p_values]
    assert table[0]["run"].endswith("★") == all(p < 0.05 for p in p_values)
    assert ("is better than every other run" in out.stdout) == all(p < 0.05 for p in p_values)
    for variant in ("scratch lenet5", "feature_extraction vgg16"):
        accuracies = [np.divide(*right_of(answer)) for row, answer in zip(table, answers)
                      if row["run"].startswith(variant + " seed")]
        assert len(accuracies) == 2
        mean, sd = np.mean(accuracies), np.std(accuracies, ddof=1)
        assert re.search(rf"^\| {variant} \| 2 \| {mean:.3f} \| {sd:.3f} \|$", out.stdout, re.M), out.stdout
        repeat = load_recipe(str(Path(run_dirs[f"{variant} seed 43"]) / "recipe.yaml"))
        assert (repeat.seed, repeat.data.split_seed) == (43, 42)
