"""Pit the transfer strategies against the from-scratch baselines on identical splits, and report.

Example:
    >>> comparison = transferkit.compare("demo")
    >>> print(comparison.table())
"""
import base64
import html
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from transferkit.api import check_buildable, last_stage, natural_size, resolve_data, run_resolved
from transferkit.backbone_choice import AUTO, choose_backbone
from transferkit.evaluation import plot_confusion
from transferkit.errors import TransferkitError
from transferkit.recipes import asks_image_size, load_recipe, recipe_or_folder
from transferkit.runs import (find_completed, load_predictions, read_history, run_key, save_figure, stage_changes,
                              write_atomic)
from transferkit.stats import discordant, mcnemar_exact, right_of, wilson_interval
from transferkit.strategies import STRATEGIES
from transferkit.strategies.runtime import distribution

ALPHA = 0.05  # a difference with an exact McNemar p-value below this counts as significant
COLUMNS = [("run", "run"), ("test_accuracy", "test acc"), ("test_interval", "95% interval"),
           ("p_vs_best", "p vs best"), ("best_val_accuracy", "best val acc"),
           ("wall_time_s", "wall s"), ("train_images_per_s", "train img/s"), ("precision", "dtype"),
           ("trainable_params", "trainable"),
           ("total_params", "total params"), ("peak_rss_mb", "peak MB")]


@dataclass
class Comparison:
    """The compared runs (metrics rows, best first, with :func:`judge`'s intervals and p-values) and the folder
    holding ``report.md`` and ``report.html``."""

    rows: list
    report_dir: Path

    @property
    def winner(self):
        """Whether the best run is significantly better (exact McNemar p < 0.05) than every other run."""
        others = self.rows[1:]
        return bool(others) and all(row["p_vs_best"] is not None and row["p_vs_best"] < ALPHA for row in others)

    def table(self):
        """The comparison as a Markdown table, the best run starred only when it is significantly better than
        every other, then what the p-values say and, with several seeds, each variant's mean and sd.

        Example:
            >>> print(compare("demo", strategies=["scratch", "finetune"]).table())
        """
        lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
                 "|" + "|".join("---" if key == "run" else "---:" for key, _ in COLUMNS) + "|"]
        for i, row in enumerate(self.rows):
            lines.append("| " + " | ".join(self.cells(i)) + " |")
        return "\n".join(lines + ["", self.verdict()] + self._seed_table())

    def cells(self, i):
        """The table cells of row ``i``, its run starred if it is the winner."""
        return [_cell(self.rows[i], key) + (" ★" if i == 0 and key == "run" and self.winner else "")
                for key, _ in COLUMNS]

    def verdict(self):
        """One line: which run wins, or which runs are tied with the best within noise and which cannot be
        paired with it.

        Example:
            >>> comparison.verdict()
            'no winner: tied with the best run (finetune vgg16) within noise (p >= 0.05): scratch small_convnet'
        """
        best, others = self.rows[0], self.rows[1:]
        if not others:
            return f"one run ({best['run']}): nothing to compare it with"
        if self.winner:
            return (f"★ {best['run']} is better than every other run (exact McNemar p < {ALPHA} on the same "
                    f"{best['test_images']} test images)")
        tied = _grouped([row for row in others if row["p_vs_best"] is not None and row["p_vs_best"] >= ALPHA])
        parts = []
        if tied:
            parts.append(f"tied with the best run ({best['run']}) within noise (p >= {ALPHA}): {', '.join(tied)}")
        parts += [f"{row['run']} cannot be paired with the best run: {row['pairing']}"
                  for row in others if row["p_vs_best"] is None]
        return "no winner: " + "; ".join(parts)

    def seed_summary(self):
        """Per variant run with several seeds: ``(variant, seeds, mean, sd)`` of the test accuracy (sample sd),
        best mean first; [] when each variant ran once.

        Example:
            >>> compare("demo", strategies=["finetune"], seeds=3).seed_summary()
            [('finetune vgg16', 3, 0.684, 0.012)]
        """
        runs = {}
        for row in self.rows:
            runs.setdefault(row["variant"], []).append(row["test_accuracy"])
        if all(len(accuracies) == 1 for accuracies in runs.values()):
            return []
        found = [(variant, len(accs), statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else None)
                 for variant, accs in runs.items()]
        return sorted(found, key=lambda item: -item[2])

    def _seed_table(self):
        if not self.seed_summary():
            return []
        lines = ["", "| variant | seeds | mean test acc | sd |", "|---|---:|---:|---:|"]
        return lines + [f"| {variant} | {n} | {mean:.3f} | {'-' if sd is None else f'{sd:.3f}'} |"
                        for variant, n, mean, sd in self.seed_summary()]


def _grouped(rows):
    """The labels of ``rows``, the seeds of one variant as one: ``['finetune vgg16 (seeds 43, 42)', 'b seed 42']``."""
    groups = {}
    for row in rows:
        groups.setdefault(row["variant"], []).append(row)
    return [group[0]["run"] if len(group) == 1 else f"{variant} (seeds {', '.join(str(row['seed']) for row in group)})"
            for variant, group in groups.items()]


def _cell(row, key):
    value = row.get(key)
    if key == "p_vs_best" and value is None:
        return "n/a" if row.get("pairing") else "-"
    if value is None:
        return "-"
    if key in ("test_accuracy", "best_val_accuracy"):
        return f"{value:.3f}"
    if key == "test_interval":
        return f"{value[0]:.3f}-{value[1]:.3f}"
    if key == "p_vs_best":
        return "<0.001" if value < 0.001 else f"{value:.3f}"
    if key in ("trainable_params", "total_params"):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def judge(rows):
    """Add to each row (best first) ``test_interval``, the Wilson 95% interval of its test accuracy, and
    ``p_vs_best``, the exact McNemar p-value of the best run against it on the same test images, both from the
    runs' ``predictions.npz``. A run that cannot be paired with the best (a different test set, no predictions)
    gets ``p_vs_best`` None and the reason in ``pairing``.

    Example:
        >>> rows = judge([{"run": "finetune vgg16", "run_dir": "runs/demo-finetune-1"},
        ...               {"run": "scratch small_convnet", "run_dir": "runs/demo-scratch-1"}])
        >>> rows[1]["p_vs_best"]
        0.0386
    """
    answers = []
    for row in rows:
        try:
            answer = load_predictions(row["run_dir"])
            right, images = right_of(answer)
            row.update(test_interval=list(wilson_interval(right, images)), test_images=images)
        except TransferkitError as err:
            answer = None
            row.update(test_interval=None, test_images=None, pairing=str(err))
        answers.append(answer)
    best = answers[0]
    rows[0]["p_vs_best"] = None
    for row, answer in zip(rows[1:], answers[1:]):
        row["p_vs_best"] = None
        if best is None:
            row["pairing"] = f"the best run has no predictions ({rows[0]['pairing']})"
        elif answer is not None:
            try:
                only_best, only_this = discordant(best, answer)
                row.update(p_vs_best=mcnemar_exact(only_best, only_this), discordant=[only_best, only_this])
            except TransferkitError as err:
                row["pairing"] = str(err)
    return rows


def _label(recipe):
    if not STRATEGIES[recipe.strategy].uses_backbone:
        return f"{recipe.strategy} {recipe.section().baseline}"
    return f"{recipe.strategy} {recipe.backbone}"


def default_strategies():
    """Every registered strategy, the from-scratch ones first (the reference the transfer ones are read against).

    Example:
        >>> default_strategies()
        ['scratch', 'feature_extraction', 'finetune', 'frozen_augment']
    """
    return sorted(STRATEGIES, key=lambda name: STRATEGIES[name].uses_backbone)


def plan(recipe, strategies=None, backbones=None, baselines=None):
    """The recipes a comparison runs: each strategy with each backbone, and scratch with each baseline.

    Example:
        >>> [r.strategy for r in plan(load_recipe("demo"), ["scratch", "finetune"])]
        ['scratch', 'finetune']
    """
    for what, names in (("strategies", strategies), ("backbones", backbones), ("baselines", baselines)):
        if names is not None and not names:
            raise TransferkitError(f"no {what} given; leave the option out for the default")
    variants = []
    for strategy in strategies or default_strategies():
        if not STRATEGIES.get_or_raise(strategy).uses_backbone:
            variants += [recipe.replace({f"{strategy}.baseline": b, "strategy": strategy})
                         for b in baselines or [recipe.section(strategy).baseline]]
        else:
            variants += [load_recipe(recipe, strategy=strategy, backbone=b) for b in backbones or [recipe.backbone]]
    for variant in variants:
        check_buildable(variant)
    return variants


def seeded(recipe, seeds):
    """The recipe once per seed: its own seed, then the next ``seeds - 1``. The repeats keep the first's data
    split (``data.split_seed``), so every seed trains and tests on the same images.

    Example:
        >>> [(r.seed, r.data.split_seed) for r in seeded(load_recipe("demo"), 3)]
        [(42, None), (43, 42), (44, 42)]
    """
    if seeds < 1:
        raise TransferkitError(f"seeds must be 1 or more; got {seeds}")
    split_seed = recipe.seed if recipe.data.split_seed is None else recipe.data.split_seed
    return [recipe] + [recipe.replace({"seed": recipe.seed + i, "data.split_seed": split_seed})
                       for i in range(1, seeds)]


def compare(recipe="demo", strategies=None, backbones=None, baselines=None, out="runs", overrides=(),
            data=None, class_names=None, verbose=0, progress=None, learning_rate=None, seeds=1):
    """Run every strategy (and baseline) on the same splits, each with ``seeds`` seeds, reusing runs that
    completed before; judge them (:func:`judge`) and write ``report.md`` and a self-contained ``report.html``
    into ``out/<recipe>-compare-<time>/``.

    ``progress(i, total, label, row_or_None, reused)`` is called before and after each run.
    ``data`` and ``class_names`` work as in :func:`~transferkit.api.run`; ``learning_rate`` sets each strategy's
    (last) stage's.

    Example:
        >>> comparison = compare("demo", strategies=["scratch", "feature_extraction"])
        >>> comparison.rows[0]["run"], comparison.rows[1]["p_vs_best"], comparison.report_dir
    """
    recipe, data = recipe_or_folder(recipe, data)  # transferkit compare photos/: the folder recipe on it
    base = load_recipe(recipe, overrides)
    distribution(base.distribute)  # made before any TensorFlow op runs (multiworker needs it); then reused
    splits, base = resolve_data(data, base, class_names)  # one load: identical splits for every run
    if isinstance(data, (str, Path)) and not asks_image_size(overrides):
        changes, why = natural_size(base, splits)  # as `transferkit run FOLDER` sizes them
        base = base.replace(changes)
        if progress is not None or verbose:
            print(f"image size {why} (--set image_size= to change)", flush=True)
    probes = None
    if base.backbone == AUTO:  # one choice for every transfer strategy
        base, probes = choose_backbone(base, splits, verbose=progress is not None or bool(verbose))
    variants = [last_stage(v, learning_rate=learning_rate) for v in plan(base, strategies, backbones, baselines)]
    runs = [(variant, repeat) for variant in variants for repeat in seeded(variant, seeds)]
    rows = []
    for i, (variant, repeat) in enumerate(runs, start=1):
        label = _label(variant) + (f" seed {repeat.seed}" if seeds > 1 else "")
        if progress:
            progress(i, len(runs), label, None, False)
        done = find_completed(out, run_key(repeat, splits))
        reused = done is not None
        if not reused:
            done = run_resolved(repeat, splits, out=out, verbose=verbose,
                                probes=probes if STRATEGIES[variant.strategy].uses_backbone else None).run_dir
        row = {**json.loads((done / "metrics.json").read_text()), "run": label, "variant": _label(variant),
               "seed": repeat.seed, "run_dir": str(done), "reused": reused,
               "history": read_history(done / "history.csv")}
        rows.append(row)
        if progress:
            progress(i, len(runs), label, row, reused)
    rows.sort(key=lambda r: -r["test_accuracy"])
    report_dir = Path(out) / f"{base.name}-compare-{time.strftime('%Y%m%d-%H%M%S')}"
    report_dir.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(judge(rows), report_dir)
    _write_report(comparison, base, splits.class_names)
    return comparison


def _plot_curves(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for row, colour in zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3):
        history = row["history"]
        epochs = [h["epoch"] for h in history]
        for ax, metric in zip(axes, ("accuracy", "loss")):
            ax.plot(epochs, [h.get(metric) for h in history], ":", color=colour, alpha=0.7)
            ax.plot(epochs, [h.get(f"val_{metric}") for h in history], "-", color=colour, label=row["run"])
            for x, text in stage_changes(history):
                ax.axvline(x, color=colour, linestyle="--", linewidth=0.8)
                ax.annotate(text, (x, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top",
                            ha="right", fontsize=7, color=colour)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.set_title(metric)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
    fig.suptitle("validation (solid), training (dotted), stage changes (dashed)")
    fig.tight_layout()
    save_figure(fig, path)


def _write_report(comparison, recipe, class_names):
    folder = comparison.report_dir
    _plot_curves(comparison.rows, folder / "curves.png")
    pictures = [("Training curves, all runs", "curves.png")]
    for i, row in enumerate(comparison.rows):
        if row.get("confusion_matrix"):
            name = f"confusion-{i + 1}.png"
            plot_confusion(row["confusion_matrix"], class_names, folder / name,
                           f"{row['run']}: test accuracy {row['test_accuracy']:.3f}")
            pictures.append((f"Confusion matrix: {row['run']}", name))
    recipe_yaml = recipe.to_yaml()
    runs = "\n".join(f"- {row['run']}: `{row['run_dir']}`{' (reused)' if row['reused'] else ''}"
                     for row in comparison.rows)
    markdown = [f"# {recipe.name}: comparison", "", comparison.table(), "", "Runs:", runs, ""]
    markdown += [f"## {title}\n\n![{title}]({name})\n" for title, name in pictures]
    markdown += ["## Recipe", "", "```yaml", recipe_yaml.rstrip(), "```", ""]
    write_atomic(folder / "report.md", "\n".join(markdown))
    write_atomic(folder / "report.html", _html(comparison, recipe, pictures))


def _html(comparison, recipe, pictures):
    escape = html.escape
    header = "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in comparison.cells(i)) + "</tr>"
                   for i in range(len(comparison.rows)))
    seeds = "".join(f"<tr><td>{escape(variant)}</td><td>{n}</td><td>{mean:.3f}</td>"
                    f"<td>{'-' if sd is None else f'{sd:.3f}'}</td></tr>"
                    for variant, n, mean, sd in comparison.seed_summary())
    if seeds:
        seeds = ("<h2>Seeds</h2><table><tr><th>variant</th><th>seeds</th><th>mean test acc</th><th>sd</th></tr>"
                 f"{seeds}</table>")
    images = "".join(
        f"<h2>{escape(title)}</h2><img alt=\"{escape(title)}\" "
        f"src=\"data:image/png;base64,{base64.b64encode((comparison.report_dir / name).read_bytes()).decode()}\">"
        for title, name in pictures)
    runs = "".join(
        f"<details><summary>{escape(row['run'])}: <code>{escape(row['run_dir'])}</code>"
        f"{' (reused)' if row['reused'] else ''}</summary><pre>{escape(_run_recipe(row))}</pre></details>"
        for row in comparison.rows)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{escape(recipe.name)} comparison"
            "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}</style></head><body>"
            f"<h1>{escape(recipe.name)}: comparison</h1><table><tr>{header}</tr>{body}</table>"
            f"<p>{escape(comparison.verdict())}</p>{seeds}"
            f"<h2>Runs</h2><p>Each run's folder and its whole resolved recipe (click to open).</p>{runs}{images}"
            "</body></html>")


def _run_recipe(row):
    return (Path(row["run_dir"]) / "recipe.yaml").read_text()
