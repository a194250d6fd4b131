"""What ``transferkit data audit`` finds, measured: ``python bench/audit.py [--seeds 1,2,3] [--backbone B]``.

The image set (one per seed): 12 classes, each the non-overlapping 48 px tiles of one photo (10 of
scikit-image's bundled photos and scikit-learn's two: offline and redistributable), nearly blank tiles left out,
40 tiles per class drawn by the seed and split 20 / 8 / 12 into train/ val/ test/ folders. Tiles of one photo are
distinct images (no pixel is shared) but often alike (grass next to grass), which is what tests a near-duplicate
detector's false alarms. Then, on that folder, at 64 px:

- label issues: 5% of all images (every split) are put in another class's folder, drawn at random; printed are
  the precision and recall of the ``label`` findings against those flips;
- near-duplicates: 10 test tiles are copied into train/, each resized (to 40 or 64 px) and re-encoded as JPEG
  (quality 70); recall is the share of them flagged as duplicating the right train copy, false positives are the
  other ``duplicate`` findings (every validation and test image is compared).

The margin and the logistic regression's C were chosen on seed 0; the other seeds are held out.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "brick", "grass",
          "gravel", "camera")
TILE, PER_CLASS, SPLIT = 48, 40, {"train": 20, "val": 8, "test": 12}
FLIPPED, PLANTED = 0.05, 10


def photos():
    """``{name: RGB uint8 array}``: the scikit-image photos above and scikit-learn's two."""
    from skimage import data as skdata
    from skimage.color import gray2rgb
    from sklearn.datasets import load_sample_images

    found = {}
    for name in PHOTOS:
        image = getattr(skdata, name)()
        found[name] = gray2rgb(image) if image.ndim == 2 else image[..., :3]
    found["china"], found["flower"] = load_sample_images().images
    return found


def tiles(image, rng):
    """``PER_CLASS`` of the non-overlapping ``TILE`` px tiles of ``image``, drawn at random among those that are
    not nearly blank (a channel's spread 12 or more: skies are left out, their tiles being the same image)."""
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    cut = [image[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] for r in range(rows) for c in range(cols)]
    kept = [tile for tile in cut if tile.std(axis=(0, 1)).max() >= 12]
    return [kept[int(i)] for i in rng.choice(len(kept), PER_CLASS, replace=False)]


def build(root, seed=0):
    """Write the image set under ``root``; returns ``(flipped, planted)``: ``{(split, file)}`` of the flipped
    labels and ``{train copy: test original}`` of the planted near-duplicates (both as ``split/class/file``)."""
    rng = np.random.default_rng(seed)
    images = []  # (split, class, tile)
    for name, image in photos().items():
        cut = tiles(image, rng)
        starts = np.cumsum([0, *SPLIT.values()])
        images += [(split, name, tile) for split, a, b in zip(SPLIT, starts, starts[1:]) for tile in cut[a:b]]
    classes = sorted({name for _, name, _ in images})
    flips = set(rng.choice(len(images), int(round(FLIPPED * len(images))), replace=False).tolist())
    flipped, planted, tests = set(), {}, []
    for i, (split, name, tile) in enumerate(images):
        given = rng.choice([c for c in classes if c != name]) if i in flips else name
        path = Path(split) / given / f"{name}-{i}.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile).save(root / path)
        if i in flips:
            flipped.add(str(path))
        elif split == "test":
            tests.append((path, tile))
    for j in rng.choice(len(tests), PLANTED, replace=False):
        path, tile = tests[int(j)]
        side = (40, 64)[int(j) % 2]
        copy = Path("train") / path.parent.name / f"copy-{path.stem}.jpg"
        Image.fromarray(tile).resize((side, side), Image.BICUBIC).save(root / copy, quality=70)
        planted[str(copy)] = str(path)
    return flipped, planted


def measure(seed, backbone, image_size, work):
    """Build the set with ``seed``, audit it, and return the row of numbers."""
    from transferkit.data.audit import audit_data

    root = Path(work) / f"tiles-{seed}"
    flipped, planted = build(root, seed)
    started = time.time()
    report = audit_data(str(root), backbone=backbone, out=Path(work) / f"audit-{seed}", verbose=False,
                        overrides=[f"image_size={image_size}"])
    flagged = {f.file for f in report.of("label")}
    found = {(f.file, f.suggestion) for f in report.of("duplicate")}
    right = found & {(original, copy) for copy, original in planted.items()}
    return {"seed": seed, "images": sum(report.counts.values()), "flipped": len(flipped), "flagged": len(flagged),
            "flagged_flipped": len(flagged & flipped), "planted": len(planted), "duplicates_found": len(right),
            "duplicate_false_positives": len(found) - len(right), "seconds": round(time.time() - started, 1),
            "features": report.features}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", default="1,2,3", help="Comma-separated seeds of the image sets (the threshold "
                                                          "and C were chosen on seed 0).")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(work) / "cache")
        rows = [measure(int(seed), args.backbone, args.image_size, work) for seed in args.seeds.split(",")]
    print(f"{rows[0]['images']} images in {len(PHOTOS) + 2} classes, {rows[0]['features']}")
    print("seed  label issues: flipped flagged  precision recall | near-duplicates: planted found recall  false+  s")
    for r in rows:
        print(f"{r['seed']:4d}  {r['flipped']:21d} {r['flagged']:7d}  {r['flagged_flipped'] / max(r['flagged'], 1):9.2f} "
              f"{r['flagged_flipped'] / r['flipped']:6.2f} | {r['planted']:24d} {r['duplicates_found']:5d} "
              f"{r['duplicates_found'] / r['planted']:6.2f} {r['duplicate_false_positives']:7d} {r['seconds']:5.0f}")
    total = {key: sum(r[key] for r in rows) for key in ("flipped", "flagged", "flagged_flipped", "planted",
                                                         "duplicates_found", "duplicate_false_positives")}
    print(f"all   label issues: precision {total['flagged_flipped'] / max(total['flagged'], 1):.2f}, recall "
          f"{total['flagged_flipped'] / total['flipped']:.2f}; near-duplicates: recall "
          f"{total['duplicates_found'] / total['planted']:.2f}, {total['duplicate_false_positives']} false positives "
          f"among {sum(r['images'] for r in rows)} images; {time.time() - started:.0f} s in all")


if __name__ == "__main__":
    main()
