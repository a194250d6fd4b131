"""Calibration and the "unknown" answer, measured on the Fashion-MNIST demo: ``python bench/calibration.py`` (about 2 minutes).

Trains the ``demo_fashion`` recipe (EfficientNet-Lite0, ImageNet weights, 5 training images per class of the embedded
Fashion-MNIST sample, 20 validation and 30 test per class) with each strategy asked (default feature_extraction and
finetune, the demo's own), then prints for each run:

- the temperature fitted on the validation split and the expected calibration error (15 bins) of the test and
  validation splits before and after it (from ``metrics.json``);
- at the rejection threshold chosen on the validation split (the top probability that keeps 95% of its right
  answers), the fraction of images accepted, not answered ``unknown``: the in-class test images (right and wrong
  ones apart), and three sets from outside the classes: uniform noise (200 RGB images, 28x28 like the sample),
  scikit-learn's digits (300, 8x8 grey) and scikit-image's bundled photos (the 24 that load offline, whole);
- the same accept rates without calibration (the temperature taken out of the model again, and the threshold
  chosen on the uncalibrated validation answers), since a temperature can reorder images' top probabilities.

Writes ``bench/calibration.json``.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page", "horse", "hubble_deep_field",
          "immunohistochemistry", "logo", "retina", "text", "clock", "brick", "grass", "gravel", "cat", "colorwheel",
          "microaneurysms", "checkerboard", "binary_blobs", "cell")


def outside_sets():
    """``{name: list of RGB uint8 images}`` from outside Fashion-MNIST's classes."""
    from sklearn.datasets import load_digits
    from skimage import data as skdata
    from skimage.color import gray2rgb

    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(skdata, name)())
        image = gray2rgb(image) if image.ndim == 2 else image[..., :3]
        photos.append(image.astype(np.uint8) * 255 if image.dtype == bool else
                      (image * 255).astype(np.uint8) if image.dtype != np.uint8 else image)
    digits = np.round(load_digits().images[:300] * 255 / 16).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (200, 28, 28, 3), dtype=np.uint8)
    return {"noise": list(noise), "digits": list(digits), "photos": photos}


def accept_rates(predictor, threshold, test, outside):
    """Fractions accepted at ``threshold``: test (all, right, wrong) and each outside set."""
    from transferkit.calibration import accepted

    labels, probabilities = test
    right = probabilities.argmax(axis=1) == labels
    kept = accepted(probabilities, threshold)
    rates = {"test": kept.mean(), "test_right": kept[right].mean(),
             "test_wrong": kept[~right].mean() if (~right).any() else None}
    rates.update({name: accepted(predictor.predict(images), threshold).mean() for name, images in outside.items()})
    return {key: None if value is None else round(float(value), 4) for key, value in rates.items()}


def measure(strategy, out, outside):
    import transferkit
    from transferkit.calibration import rejection_threshold, scaled
    from transferkit.runs import load_predictions
    from transferkit.temperature import fold_temperature, softmax_dense

    result = transferkit.run("demo_fashion", strategy=strategy, out=out, verbose=0)
    block, answers = result.metrics["calibration"], load_predictions(result.run_dir)
    row = {"strategy": strategy, "test_accuracy": result.metrics["test_accuracy"], **block}
    if block["temperature"] is None:
        return row
    test = answers["test_labels"], answers["test_probabilities"]
    row["accepted"] = accept_rates(transferkit.load(result.run_dir), block["reject_threshold"], test, outside)
    uncalibrated = transferkit.load(result.run_dir)
    fold_temperature(softmax_dense(uncalibrated.model)[0], 1 / block["temperature"])
    val_before = scaled(answers["val_probabilities"], 1 / block["temperature"])
    threshold = rejection_threshold(answers["val_labels"], val_before)
    test_before = test[0], scaled(test[1], 1 / block["temperature"])
    row["uncalibrated"] = {"reject_threshold": threshold,
                           "accepted": accept_rates(uncalibrated, threshold, test_before, outside)}
    return row


def show(row):
    print(f"\n{row['strategy']}: test accuracy {row['test_accuracy']:.3f}")
    if row["temperature"] is None:
        print(f"  not calibrated: {row['not_calibrated']}")
        return
    print(f"  temperature {row['temperature']:.3f} (fitted on validation)")
    print(f"  ECE test  {row['ece_test_before']:.4f} -> {row['ece_test']:.4f}")
    print(f"  ECE val   {row['ece_val_before']:.4f} -> {row['ece_val']:.4f}")
    for label, threshold, rates in (("calibrated", row["reject_threshold"], row["accepted"]),
                                    ("uncalibrated", row["uncalibrated"]["reject_threshold"],
                                     row["uncalibrated"]["accepted"])):
        cells = "  ".join(f"{key} {'-' if value is None else f'{value:.3f}'}" for key, value in rates.items())
        print(f"  accepted at {threshold:.4f} ({label}): {cells}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="feature_extraction,finetune")
    parser.add_argument("--out", default=str(HERE / "calibration.json"))
    args = parser.parse_args()
    outside = outside_sets()
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(strategy, work, outside) for strategy in args.strategies.split(",")]
    for row in rows:
        show(row)
    Path(args.out).write_text(json.dumps({"recipe": "demo_fashion", "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
