"""What an export keeps and costs: its accuracy on a test split next to the in-memory model's, its size on
disk and its latency per image in its own runtime on this CPU.

Example:
    >>> measured = measure_export(load(run_dir), load(export_dir), dataset, "test split", export_dir)
    >>> measured["accuracy"], measured["model_accuracy"], measured["latency_ms"]
    (0.8, 0.8, 11.2)
"""
import os
import statistics
import time
from pathlib import Path

import numpy as np

from transferkit.errors import TransferkitError
from transferkit.evaluation import predict_dataset


def latency_ms(predictor, repeats=20, budget_s=3.0):
    """The median wall time, in milliseconds, of ``predictor.run_resized`` on one resized image (batch 1),
    after two warm-up calls: ``repeats`` calls, or as many (at least 5) as fit in ``budget_s`` seconds.

    Example:
        >>> latency_ms(transferkit.load("runs/demo-finetune-20261123-171500/export/tflite"))
        38.4
    """
    image = np.random.default_rng(0).uniform(0, 255, (1, predictor.image_size, predictor.image_size, 3))
    image = image.astype(np.float32)
    for _ in range(2):
        predictor.run_resized(image)
    times, deadline = [], time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        predictor.run_resized(image)
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


def folder_bytes(folder):
    """The total size of the files in ``folder`` (recursively), in bytes."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def measure_export(model, artifact, dataset, described, folder):
    """Accuracy, top-1 agreement, size and latency of ``artifact`` (a Predictor of an export in ``folder``)
    next to ``model`` (the run's in-memory Predictor), on ``dataset`` (unbatched uint8 images and labels)
    described by ``described``.

    Example:
        >>> measure_export(model, artifact, dataset, "test split", folder)["accuracy_drop_points"]
        0.0
    """
    labels, expected = predict_dataset(model, dataset)
    _, answered = predict_dataset(artifact, dataset)
    hits_model = int(np.sum(expected.argmax(axis=1) == labels))
    hits = int(np.sum(answered.argmax(axis=1) == labels))
    count = len(labels)
    return {
        "data": described,
        "test_images": count,
        "accuracy": hits / count,
        "model_accuracy": hits_model / count,
        "accuracy_drop_points": round(100 * (hits_model - hits) / count, 6),
        "top1_agreement": float(np.mean(answered.argmax(axis=1) == expected.argmax(axis=1))),
        "size_bytes": folder_bytes(folder),
        "model_size_bytes": (Path(model.path) / "model.keras").stat().st_size,
        "latency_ms": latency_ms(artifact),
        "model_latency_ms": latency_ms(model),
        "runtime": artifact.runtime,
        "model_runtime": model.runtime,
        "cpu_threads": os.cpu_count(),
    }


def check_accuracy_drop(measured, limit, format):
    """Raise a one-line :class:`TransferkitError` if the export lost more than ``limit`` accuracy points.

    Example:
        >>> check_accuracy_drop({"accuracy_drop_points": 2.0, ...}, 1.0, "tflite")
        Traceback (most recent call last):
        TransferkitError: the tflite export loses 2.00 accuracy points ...
    """
    drop = measured["accuracy_drop_points"]
    if drop > limit:
        raise TransferkitError(
            f"the {format} export loses {drop:.2f} accuracy points on {measured['data']} "
            f"({measured['model_accuracy']:.4f} -> {measured['accuracy']:.4f} on {measured['test_images']} images), "
            f"more than the {limit:g} allowed (--max-accuracy-drop); nothing was written")
