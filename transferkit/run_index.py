"""``transferkit runs``: one line per run folder, read from the files a run writes, without TensorFlow.

Example:
    >>> for row in list_runs("runs"):
    ...     print(row["name"], row["status"], row["test_accuracy"])
"""
import json
import os
import socket
from pathlib import Path

import yaml

from transferkit.errors import TransferkitError


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid, host):
    """False only when the process is known gone: on this machine, and no process has that pid."""
    if host and host != socket.gethostname():
        return True  # another machine's process: cannot tell, so it stays "running"
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # it exists, under another user
    except (OSError, ValueError, TypeError):
        return False
    return True


def _data(recipe):
    data = recipe.get("data") or {}
    source = data.get("source", "sample")
    if source == "folder":
        return data.get("path") or "folder"
    if source == "tfds":
        return f"tfds {data.get('name')}"
    if source == "sample" and data.get("per_class"):
        return f"sample {'/'.join(map(str, data['per_class']))} per class"
    return source


def _row(run_dir):
    state = _read_json(run_dir / "run.json")
    metrics = _read_json(run_dir / "metrics.json")
    try:
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        recipe = {}
    strategy = recipe.get("strategy")
    section = recipe.get(strategy) if isinstance(recipe.get(strategy), dict) else {}
    if "baseline" in section:  # a strategy that trains a from-scratch baseline names it in its section
        network = section["baseline"]
    else:
        network = f"{recipe.get('backbone')} ({recipe.get('weights')})"
    status = state.get("status", "unknown")
    if status == "running" and not _alive(state.get("pid"), state.get("host")):
        status = "killed"  # the process that wrote "running" is gone: kill -9, a crash, a reboot
    return {
        "name": run_dir.name, "recipe": recipe.get("name"), "data": _data(recipe), "strategy": strategy,
        "network": network, "status": status, "test_accuracy": metrics.get("test_accuracy"),
        "wall_time_s": metrics.get("wall_time_s", state.get("elapsed_s")), "date": state.get("updated"),
        "resume": None if status in ("completed", "running") else f"transferkit run --resume {run_dir}",
    }


def list_runs(out="runs"):
    """Every run folder under ``out`` (those with a ``run.json``), oldest first, as dicts: name, recipe, data,
    strategy, network (backbone and weights, or the baseline), status (``running``, ``completed``, ``failed``,
    ``interrupted``, or ``killed`` when the process that was running it is gone), test accuracy, wall time,
    date, and the command that resumes a run that did not complete.

    Example:
        >>> [row["status"] for row in list_runs("runs")]
        ['completed', 'killed']
    """
    root = Path(out)
    if not root.is_dir():
        raise TransferkitError(f"no run folder {out}: runs are written there by transferkit run (see --out)")
    rows = [_row(state.parent) for state in root.glob("*/run.json")]
    return sorted(rows, key=lambda row: (row["date"] or "", row["name"]))


def table(rows):
    """``rows`` as aligned text, one line each, plus the resume command under any run that stopped."""
    if not rows:
        return "no runs yet"
    header = ("run", "recipe", "data", "strategy", "network", "status", "test acc", "wall s", "date")
    cells = [header] + [(r["name"], r["recipe"] or "?", r["data"], r["strategy"] or "?", r["network"] or "?",
                         r["status"], "" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}",
                         "" if r["wall_time_s"] is None else f"{r['wall_time_s']:.1f}", r["date"] or "")
                        for r in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    lines = []
    for i, row in enumerate(cells):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if i and rows[i - 1]["resume"]:
            lines.append(f"    resume: {rows[i - 1]['resume']}")
    return "\n".join(lines)
