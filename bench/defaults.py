"""Which training-loop defaults pay, measured: ``python bench/defaults.py [--seeds 3] [--quick]``.

On three image sets (the demo's Fashion-MNIST items; scikit-learn's 8x8 digits; patches of scikit-image's
photos, a natural-photo set), for several seeds (each seed draws other training images), this trains
``feature_extraction``, ``finetune`` and ``scratch`` with the shipped recipe as it is and with one training-loop
setting changed at a time (the scratch baseline: only which epoch is kept), on the same splits, and prints each variant's mean test accuracy and its difference
from the defaults with its spread over seeds. Writes ``bench/defaults.json``. Runs that completed before (in
``--work``) are reused, so an interrupted measurement continues.

The sets, all offline and redistributable:
  fashion  the embedded Fashion-MNIST sample (the demo until 2026-12-03): 5 training images per class drawn by the seed from 100,
           20 validation and 30 test per class; recipe ``demo_fashion`` (EfficientNet-Lite0, ImageNet, 224 px).
  digits   scikit-learn's digits (10 classes, 8x8 grey): 10 training images per class drawn by the seed, 20
           validation and 50 test per class, disjoint; recipe ``folder`` at 64 px.
  photos   patches of 8 scikit-image photos, a class per photo: training patches from the left half of each
           photo, validation from the next 22%, test from the last 28%, so no pixel is shared across splits;
           8 training patches per class (placed by the seed), 15 validation, 30 test; recipe ``folder`` at 96 px.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

STRATEGIES = ("feature_extraction", "finetune", "scratch")
TRANSFER = STRATEGIES[:2]  # the scratch baseline is measured for which epoch is kept, not for every regulariser

# name -> (overrides for every strategy's section (KEY is filled in), other overrides, strategies measured)
VARIANTS = {
    "defaults": ({}, {}, STRATEGIES),
    "monitor=val_accuracy": ({"monitor": "val_accuracy"}, {}, STRATEGIES),
    "patience=null": ({"patience": None}, {}, STRATEGIES),  # never stops early; the best epoch still kept
    "last epoch": ({"patience": None, "restore_best": False}, {}, STRATEGIES),  # the behaviour before early stopping
    "ties=first": ({"ties": "first"}, {}, STRATEGIES),  # equal val_accuracy: the first epoch kept (before 2026-12-03)
    "schedule=cosine": ({"schedule": "cosine"}, {}, TRANSFER),
    "schedule=one_cycle": ({"schedule": "one_cycle"}, {}, TRANSFER),
    "label_smoothing=0.1": ({"label_smoothing": 0.1}, {}, TRANSFER),
    "mixup=0.2": ({}, {"augment.mixup": 0.2}, TRANSFER),
    "ema=0.9": ({"ema": 0.9}, {}, TRANSFER),
    # the dense head trained by Adam (the default until 2026-12-04), not a logistic regression fitted to convergence
    "fit=train": ({}, {"feature_extraction.fit": "train", "finetune.head_fit": "train"}, TRANSFER),
}
QUICK = ("defaults", "monitor=val_accuracy")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "brick", "grass")


def log(*args):
    print(*args, flush=True)


def draw(rng, labels, counts, exclude=()):
    """Indices of ``counts[c]`` examples of each class ``c``, drawn without replacement, none in ``exclude``."""
    left = np.setdiff1d(np.arange(len(labels)), np.asarray(exclude, dtype=int))
    return np.concatenate([rng.choice(left[labels[left] == c], n, replace=False) for c, n in enumerate(counts)])


def fashion(seed):
    from transferkit.data.embedded import load_sample

    sample = load_sample()
    (x, y), classes = sample.train, len(sample.class_names)
    pool = np.concatenate([np.flatnonzero(y == c)[:100] for c in range(classes)])
    train = np.sort(pool[draw(np.random.default_rng(seed), y[pool], [5] * classes)])
    first = {name: np.concatenate([np.flatnonzero(getattr(sample, name)[1] == c)[:n] for c in range(classes)])
             for name, n in (("val", 20), ("test", 30))}
    data = {"train": (x[train], y[train]),
            **{name: (getattr(sample, name)[0][i], getattr(sample, name)[1][i]) for name, i in first.items()}}
    return data, list(sample.class_names), "demo_fashion", {}


def digits(seed):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = np.round(bunch.images * 255 / 16).astype(np.uint8), bunch.target
    fixed = np.random.default_rng(0)  # validation and test stay the same across seeds
    val = draw(fixed, labels, [20] * 10)
    test = draw(fixed, labels, [50] * 10, exclude=val)
    train = draw(np.random.default_rng(seed), labels, [10] * 10, exclude=np.concatenate([val, test]))
    data = {name: (images[i], labels[i]) for name, i in (("train", train), ("val", val), ("test", test))}
    return data, [str(d) for d in range(10)], "folder", {"image_size": 64}


def photos(seed):
    from skimage import data as skdata
    from skimage.color import gray2rgb

    bands = {"train": (0.0, 0.5, 8, seed), "val": (0.5, 0.72, 15, 1000), "test": (0.72, 1.0, 30, 1001)}
    out = {name: ([], []) for name in bands}
    for label, name in enumerate(PHOTOS):
        image = getattr(skdata, name)()
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        image = (image * 255).astype(np.uint8) if image.dtype != np.uint8 else image
        height, width = image.shape[:2]
        side = min(height, width) // 6
        for split, (start, stop, count, split_seed) in bands.items():
            rng = np.random.default_rng([split_seed, label])
            lo, hi = int(start * width), int(stop * width) - side
            for _ in range(count):
                top, left = rng.integers(0, height - side + 1), rng.integers(lo, hi + 1)
                out[split][0].append(image[top:top + side, left:left + side])
                out[split][1].append(label)
    data = {name: (images, np.asarray(labels)) for name, (images, labels) in out.items()}  # sizes differ
    return data, list(PHOTOS), "folder", {"image_size": 96}


SETS = {"fashion": fashion, "digits": digits, "photos": photos}


def overrides_for(variant, strategy):
    per_section, other, _ = VARIANTS[variant]
    pairs = {f"{strategy}.{key}": value for key, value in per_section.items()}  # a strategy's section is its name
    return [f"{key}={yaml.safe_dump(value).splitlines()[0]}" for key, value in {**pairs, **other}.items()]


def measure(set_name, seed, variant, strategy, work, built):
    """One run (reused if it completed in ``work`` before); ``built`` is ``SETS[set_name](seed)``."""
    import transferkit

    data, class_names, recipe, extra = built
    overrides = [f"seed={seed}", *(f"{k}={v}" for k, v in extra.items()), *overrides_for(variant, strategy)]
    comparison = transferkit.compare(recipe, strategies=[strategy], baselines=None, data=data,
                                     class_names=class_names, out=str(work / set_name), overrides=overrides)
    row = comparison.rows[0]
    stages = row.get("stages") or []
    return {"set": set_name, "seed": seed, "variant": variant, "strategy": strategy,
            "test_accuracy": row["test_accuracy"], "best_val_accuracy": row.get("best_val_accuracy"),
            "wall_s": row.get("wall_time_s"), "epochs_run": sum(s.get("epochs_run", 0) for s in stages),
            "reused": row["reused"]}


def table(rows, sets, variants):
    """Markdown: one row per variant, per set the mean test accuracy over seeds and strategies' columns."""
    def cell(variant, set_name, strategy):
        accs = {r["seed"]: r["test_accuracy"] for r in rows
                if (r["variant"], r["set"], r["strategy"]) == (variant, set_name, strategy)}
        base = {r["seed"]: r["test_accuracy"] for r in rows
                if (r["variant"], r["set"], r["strategy"]) == ("defaults", set_name, strategy)}
        if not accs:
            return ""
        mean = statistics.mean(accs.values())
        if variant == "defaults":
            return f"{mean:.3f}"
        deltas = [100 * (accs[s] - base[s]) for s in accs if s in base]
        spread = f" ({min(deltas):+.0f}..{max(deltas):+.0f})" if len(deltas) > 1 else ""
        return f"{statistics.mean(deltas):+.1f}{spread}" if deltas else f"{mean:.3f}"

    short = {"feature_extraction": "fe", "finetune": "ft", "scratch": "scratch"}
    head = ["variant"] + [f"{s} {short[k]}" for s in sets for k in STRATEGIES]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for variant in variants:
        lines.append("| " + " | ".join([variant] + [cell(variant, s, k) for s in sets for k in STRATEGIES]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--quick", action="store_true", help="one seed, two variants")
    parser.add_argument("--work", default=None, help="where runs are kept and reused (default: a temporary folder)")
    parser.add_argument("--out", default=str(HERE / "defaults.json"))
    args = parser.parse_args()
    sets = args.sets.split(",")
    variants = QUICK if args.quick else (args.variants.split(",") if args.variants else list(VARIANTS))
    seeds = range(1, 2 if args.quick else args.seeds + 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        os.environ.setdefault("TRANSFERKIT_CACHE", str(work / "cache"))
        rows = []
        for seed in seeds:  # a whole table per seed, so a partial measurement is still read across sets
            for set_name in sets:
                built = SETS[set_name](seed)  # once for every variant and strategy
                for variant in variants:
                    for strategy in VARIANTS[variant][2]:
                        row = measure(set_name, seed, variant, strategy, work, built)
                        rows.append(row)
                        Path(args.out).write_text(json.dumps({"rows": rows}, indent=2) + "\n")  # so far
                        log(f"{set_name} seed {seed} {variant:28s} {strategy:18s} "
                            f"test {row['test_accuracy']:.3f} epochs {row['epochs_run']} {row['wall_s'] or 0:.1f} s")
    text = table(rows, sets, variants)
    log("\nmean test accuracy of the defaults; for each other variant, its mean difference in points "
        f"(range over {len(seeds)} seeds)\n" + text)
    Path(args.out).write_text(json.dumps({"rows": rows, "table": text}, indent=2) + "\n")


if __name__ == "__main__":
    main()
