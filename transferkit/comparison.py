"""Pit the transfer strategies against the from-scratch baselines on identical splits, and report.

Example:
    >>> comparison = transferkit.compare("demo")
    >>> print(comparison.table())
"""
import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

from transferkit.api import check_buildable, last_stage, resolve_data, run_resolved
from transferkit.backbone_choice import AUTO, choose_backbone
from transferkit.evaluation import plot_confusion
from transferkit.errors import TransferkitError
from transferkit.recipes import load_recipe
from transferkit.runs import find_completed, read_history, run_key, save_figure, write_atomic
from transferkit.strategies import STRATEGIES
from transferkit.strategies.runtime import distribution

COLUMNS = [("run", "run"), ("test_accuracy", "test acc"), ("best_val_accuracy", "best val acc"),
           ("wall_time_s", "wall s"), ("train_images_per_s", "train img/s"), ("precision", "dtype"),
           ("trainable_params", "trainable"),
           ("total_params", "total params"), ("peak_rss_mb", "peak MB")]


@dataclass
class Comparison:
    """The compared runs (metrics rows, best first) and the folder holding ``report.md`` and ``report.html``."""

    rows: list
    report_dir: Path

    def table(self):
        """The comparison as a Markdown table, the winner marked with a star."""
        lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
                 "|" + "|".join("---" if key == "run" else "---:" for key, _ in COLUMNS) + "|"]
        for i, row in enumerate(self.rows):
            cells = [_cell(row, key) + (" ★" if i == 0 and key == "run" else "") for key, _ in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _cell(row, key):
    value = row.get(key)
    if value is None:
        return "-"
    if key in ("test_accuracy", "best_val_accuracy"):
        return f"{value:.3f}"
    if key in ("trainable_params", "total_params"):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


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


def compare(recipe="demo", strategies=None, backbones=None, baselines=None, out="runs", overrides=(),
            data=None, class_names=None, verbose=0, progress=None, learning_rate=None):
    """Run every strategy (and baseline) on the same splits, reusing runs that completed before, and
    write ``report.md`` and a self-contained ``report.html`` into ``out/<recipe>-compare-<time>/``.

    ``progress(i, total, label, row_or_None, reused)`` is called before and after each run.
    ``data`` and ``class_names`` work as in :func:`~transferkit.api.run`; ``learning_rate`` sets each strategy's
    (last) stage's.

    Example:
        >>> comparison = compare("demo", strategies=["scratch", "feature_extraction"])
        >>> comparison.rows[0]["run"], comparison.report_dir
    """
    base = load_recipe(recipe, overrides)
    distribution(base.distribute)  # made before any TensorFlow op runs (multiworker needs it); then reused
    splits, base = resolve_data(data, base, class_names)  # one load: identical splits for every run
    probes = None
    if base.backbone == AUTO:  # one choice for every transfer strategy
        base, probes = choose_backbone(base, splits, verbose=progress is not None or bool(verbose))
    variants = [last_stage(v, learning_rate=learning_rate) for v in plan(base, strategies, backbones, baselines)]
    rows = []
    for i, variant in enumerate(variants, start=1):
        label = _label(variant)
        if progress:
            progress(i, len(variants), label, None, False)
        done = find_completed(out, run_key(variant, splits))
        reused = done is not None
        if not reused:
            done = run_resolved(variant, splits, out=out, verbose=verbose,
                                probes=probes if STRATEGIES[variant.strategy].uses_backbone else None).run_dir
        row = {**json.loads((done / "metrics.json").read_text()), "run": label, "run_dir": str(done),
               "reused": reused, "history": read_history(done / "history.csv")}
        rows.append(row)
        if progress:
            progress(i, len(variants), label, row, reused)
    rows.sort(key=lambda r: -r["test_accuracy"])
    report_dir = Path(out) / f"{base.name}-compare-{time.strftime('%Y%m%d-%H%M%S')}"
    report_dir.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(rows, report_dir)
    _write_report(comparison, base, splits.class_names)
    return comparison


def _plot_curves(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for row, colour in zip(rows, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3):
        epochs = [h["epoch"] for h in row["history"]]
        for ax, metric in zip(axes, ("accuracy", "loss")):
            ax.plot(epochs, [h.get(metric) for h in row["history"]], ":", color=colour, alpha=0.7)
            ax.plot(epochs, [h.get(f"val_{metric}") for h in row["history"]], "-", color=colour, label=row["run"])
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.set_title(f"{metric}: validation (solid), training (dotted)")
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
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
    header = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row, key) + (' ★' if i == 0 and key == 'run' else ''))}</td>"
                         for key, _ in COLUMNS) + "</tr>"
        for i, row in enumerate(comparison.rows))
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" "
        f"src=\"data:image/png;base64,{base64.b64encode((folder / name).read_bytes()).decode()}\">"
        for title, name in pictures)
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(recipe.name)} comparison"
            "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}</style></head><body>"
            f"<h1>{html.escape(recipe.name)}: comparison</h1><table><tr>{header}</tr>{body}</table>{images}"
            f"<h2>Recipe</h2><pre>{html.escape(recipe_yaml)}</pre></body></html>")
    write_atomic(folder / "report.html", page)
