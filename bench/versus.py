"""This checkout's training speed against an earlier commit's, side by side: ``python bench/versus.py REV [--reps 2]``.

Figures 3 and 5 of ``bench/run.py`` are ratios against a peer measured in the same run; this script says whether
the code itself got slower between two commits. ``REV`` is exported (``git archive``) into a temporary folder;
then, ``--reps`` times and in alternating order, a fresh process for each side measures, with this checkout's
bench code and that side's ``transferkit``:

- figure 3's numerators: ``frozen_augment``'s and ``finetune``'s fine-tuning stage's training images per second
  (median step, each stage's first epoch left out), on ``bench/run.py --quick``'s folder, recipe and epochs;
- figure 5's two epochs: the fine-tuning epoch on cached block4 activations and on images (48 px).

The best repetition of each side counts; each figure is this checkout's rate over REV's (above 1: faster now).
Targets: every ratio >= 0.95 (within 5%). Prints a table and writes ``bench/versus.json``.

Example: ``python bench/versus.py aeb8000^`` (the code before the stage runner of issue 14).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURES = ("frozen_augment_images_per_s", "finetune_images_per_s", "cached_epoch_per_s", "images_epoch_per_s")


def child(checkout):
    """Runs in a fresh process with ``checkout``'s transferkit; prints one JSON line of rates."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(HERE))
    import run  # this checkout's bench code; it puts ROOT on sys.path, which the other side must not see

    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    sys.path.insert(0, str(checkout))
    import transferkit
    from transferkit.data.sources import load_data

    assert Path(transferkit.__file__).resolve().is_relative_to(Path(checkout).resolve()), transferkit.__file__
    size, batch, epochs = 32, 32, 3
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(tmp) / "cache")
        root = Path(tmp) / "png"
        run.write_pngs(root, limit=300)
        recipe = run.recipe_for(root, size, batch, epochs, epochs, 0.05 * 360)
        splits = load_data(recipe.data, recipe.seed)
        rates = {}
        with run.policy_of(recipe):
            timer, _, _ = run.run_ours(recipe, splits, "frozen_augment")
            rates["frozen_augment_images_per_s"] = run.step_rate(timer.steps[:epochs], batch)
            timer, _, _ = run.run_ours(recipe, splits, "finetune")
            rates["finetune_images_per_s"] = run.step_rate(timer.steps[epochs:], batch)
            boundary = run.figure_boundary(recipe, splits, 3, 1, 48)
        rates["cached_epoch_per_s"] = 1 / boundary["cached_epoch_s"]
        rates["images_epoch_per_s"] = 1 / boundary["images_epoch_s"]
    print(json.dumps(rates), flush=True)


def measure(checkout):
    out = subprocess.run([sys.executable, __file__, "--child", str(checkout)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the measurement of {checkout} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", help="the earlier commit")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "versus.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if not args.rev:
        parser.error("give the earlier commit, e.g. aeb8000^")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.rev], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        runs = {"now": [], "then": []}
        for rep in range(args.reps):
            for side in (("then", "now") if rep % 2 == 0 else ("now", "then")):
                print(f"rep {rep + 1}: {side} ...", flush=True)
                runs[side].append(measure(old if side == "then" else ROOT))
    best = {side: {k: max(r[k] for r in rows) for k in FIGURES} for side, rows in runs.items()}
    table = {k: best["now"][k] / best["then"][k] for k in FIGURES}
    print(f"\n{'figure (this checkout / ' + args.rev + ')':44s} {'now':>9s} {'then':>9s} {'ratio':>7s}  target >= 0.95")
    for k in FIGURES:
        status = "met" if table[k] >= 0.95 else "MISSED"
        print(f"{k:44s} {best['now'][k]:9.3f} {best['then'][k]:9.3f} {table[k]:7.3f}  {status}")
    Path(args.out).write_text(json.dumps({"rev": args.rev, "commit": commit, "runs": runs, "ratios": table},
                                         indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
