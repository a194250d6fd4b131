"""compare's judgement of finished runs: intervals, p-values, the star and the verdict; seeds that keep one split."""
import numpy as np
import pytest

from transferkit.comparison import Comparison, judge, seeded
from transferkit.data.folder import list_folder
from transferkit.errors import TransferkitError
from transferkit.recipes import load_recipe
from transferkit.runs import load_predictions, save_predictions, stage_changes
from transferkit.stats import discordant, mcnemar_exact, right_of, wilson_interval


def fake_run(folder, name, labels, right):
    """A run folder whose predictions.npz is right on the images where ``right`` is true (two classes)."""
    run_dir = folder / name
    run_dir.mkdir()
    predicted = np.where(right, labels, 1 - labels)
    probabilities = np.eye(2)[predicted] * 0.8 + 0.1
    save_predictions(run_dir, labels, probabilities, labels[:4], probabilities[:4])
    return {"run": name, "variant": name, "run_dir": str(run_dir), "test_accuracy": float(np.mean(right))}


def comparison(tmp_path, *rows):
    rows = sorted(rows, key=lambda r: -r["test_accuracy"])
    return Comparison(judge(rows), tmp_path)


@pytest.fixture
def labels():
    return np.arange(60) % 2


def test_a_best_run_significantly_above_every_other_gets_the_star(tmp_path, labels):
    best = fake_run(tmp_path, "best", labels, np.arange(60) >= 6)   # 54 of 60
    worse = fake_run(tmp_path, "worse", labels, np.arange(60) >= 30)  # 30 of 60, wrong on all best's misses
    result = comparison(tmp_path, worse, best)
    assert [row["run"] for row in result.rows] == ["best", "worse"] and result.winner
    predictions = [load_predictions(row["run_dir"]) for row in result.rows]
    assert result.rows[0]["test_interval"] == pytest.approx(wilson_interval(*right_of(predictions[0])))
    assert result.rows[1]["p_vs_best"] == mcnemar_exact(*discordant(*predictions)) < 0.05
    assert result.rows[1]["discordant"] == [24, 0]
    table = result.table()
    assert table.splitlines()[2].startswith("| best ★ |") and "| worse |" in table
    assert result.verdict() == ("★ best is better than every other run (exact McNemar p < 0.05 on the same 60 test "
                                "images)")


def test_runs_within_noise_of_the_best_are_named_tied_and_nobody_gets_the_star(tmp_path, labels):
    best = fake_run(tmp_path, "best", labels, np.arange(60) >= 6)
    close = fake_run(tmp_path, "close", labels, np.arange(60) >= 8)   # 2 images fewer: p = 0.5
    far = fake_run(tmp_path, "far", labels, np.arange(60) >= 30)
    result = comparison(tmp_path, best, close, far)
    assert not result.winner and "★" not in result.table()
    assert result.rows[1]["p_vs_best"] == 0.5
    assert result.verdict() == "no winner: tied with the best run (best) within noise (p >= 0.05): close"


def test_a_run_on_another_test_set_is_not_paired_and_the_table_says_so(tmp_path, labels):
    best = fake_run(tmp_path, "best", labels, np.arange(60) >= 6)
    other = fake_run(tmp_path, "other", labels[:40], np.arange(40) >= 30)
    result = comparison(tmp_path, best, other)
    assert result.rows[1]["p_vs_best"] is None and result.rows[1]["test_interval"] is not None
    assert not result.winner
    assert "| other | 0.250 | 0.142-0.402 | n/a |" in result.table()
    assert result.verdict() == ("no winner: other cannot be paired with the best run: different test sets "
                                "(60 and 40 images): cannot be paired")


def test_a_run_without_predictions_has_no_interval_and_is_not_paired(tmp_path, labels):
    best = fake_run(tmp_path, "best", labels, np.arange(60) >= 6)
    (tmp_path / "old").mkdir()
    old = {"run": "old", "variant": "old", "run_dir": str(tmp_path / "old"), "test_accuracy": 0.4}
    result = comparison(tmp_path, best, old)
    assert result.rows[1]["test_interval"] is None and "no predictions.npz" in result.verdict()
    assert "| old | 0.400 | - | n/a |" in result.table()


def test_the_seed_table_gives_each_variant_its_mean_and_sample_sd(tmp_path, labels):
    rows = [dict(fake_run(tmp_path, f"a{i}", labels, np.arange(60) >= cut), variant="a")
            for i, cut in enumerate((6, 12, 15))]
    rows.append(dict(fake_run(tmp_path, "b0", labels, np.arange(60) >= 30), variant="b"))
    result = comparison(tmp_path, *rows)
    (variant, n, mean, sd), single = result.seed_summary()
    assert (variant, n, single[:2]) == ("a", 3, ("b", 1)) and single[3] is None
    accuracies = [54 / 60, 48 / 60, 45 / 60]
    assert mean == pytest.approx(np.mean(accuracies)) and sd == pytest.approx(np.std(accuracies, ddof=1))
    assert f"| a | 3 | {mean:.3f} | {sd:.3f} |" in result.table()
    assert Comparison(judge([rows[0], rows[3]]), tmp_path).seed_summary() == []  # one run per variant: no table


def test_the_verdict_names_the_seeds_of_a_tied_variant_once(tmp_path, labels):
    rows = [dict(fake_run(tmp_path, f"a seed {seed}", labels, np.arange(60) >= cut), variant="a", seed=seed)
            for seed, cut in ((42, 6), (43, 8), (44, 9))]
    rows.append(dict(fake_run(tmp_path, "b seed 42", labels, np.arange(60) >= 7), variant="b", seed=42))
    assert comparison(tmp_path, *rows).verdict() == (
        "no winner: tied with the best run (a seed 42) within noise (p >= 0.05): b seed 42, a (seeds 43, 44)")


def test_seeded_repeats_keep_the_first_seeds_folder_split(photos):
    recipe = load_recipe("folder", overrides=[f"data.path={photos}"])
    repeats = seeded(recipe, 3)
    assert [(r.seed, r.data.split_seed) for r in repeats] == [(recipe.seed, None), (recipe.seed + 1, recipe.seed),
                                                              (recipe.seed + 2, recipe.seed)]
    splits = [list_folder(r.data, r.seed).pairs for r in repeats]
    assert splits[0] == splits[1] == splits[2]
    assert list_folder(repeats[1].data.model_copy(update={"split_seed": None}), repeats[1].seed).pairs != splits[0]
    with pytest.raises(TransferkitError, match="seeds must be 1 or more"):
        seeded(recipe, 0)


def test_stage_changes_fall_between_the_epochs_where_the_stage_moves():
    history = [{"epoch": e, "stage": s} for e, s in ((1, "head"), (2, "head"), (3, "finetune"), (4, "finetune"))]
    assert stage_changes(history) == [(2.5, "head -> finetune")]
    assert stage_changes(history[:2]) == [] and stage_changes([]) == []
