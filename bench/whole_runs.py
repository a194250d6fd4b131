"""Whole runs, as users feel them: ``python bench/whole_runs.py [--reps 2]`` (bench/run.py's figure 9).

For each strategy, the wall time of one ``transferkit.run`` on a small folder of PNG files (the embedded sample,
72 images per split: 216 files) against the wall time of a plain-Keras script doing the same job as Keras'
tutorials write it: load the folder with ``image_dataset_from_directory``, build, fit with validation, evaluate
on the test split, save a ``.keras`` file. Both sides include first-epoch tracing, validation and the saved
model; transferkit's also its checkpoints, plots and metrics, and it runs at its defaults (early stopping with
patience 5, mixed precision auto). Same folder, image size, batch size and maximum epochs on both sides; the
two sides alternate, the order swapped each repetition, and the faster repetition of each counts. The figure is
the peer's seconds over transferkit's (above 1: transferkit is faster).

The peers: frozen_augment is TF's transfer-learning tutorial (augmentation layers in the model,
``base(x, training=False)``); finetune continues it with block5 unfrozen at a 100x lower rate;
feature_extraction is Deep Learning with Python's (``conv_base.predict`` once, a dense head on the features);
scratch is the book's small convnet (transferkit's ``small_convnet`` baseline, the same layers).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

STRATEGIES = ("feature_extraction", "scratch", "frozen_augment", "finetune")


def _fit_and_save(model, train, val, test, epochs, path, batch_size, learning_rate=1e-3, initial_epoch=0,
                  logits=False):
    """Compile with Adam, fit with validation, evaluate on test, save; datasets or ``(x, y)`` arrays."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    arrays = isinstance(train, tuple)
    model.fit(*(train if arrays else (train,)), validation_data=val, epochs=initial_epoch + epochs,
              initial_epoch=initial_epoch, batch_size=batch_size if arrays else None, verbose=0)
    accuracy = float(model.evaluate(*(test if arrays else (test,)), verbose=0)[1])
    model.save(path)
    return accuracy


def peer_run(strategy, root, size, batch_size, epochs, fine_epochs, num_classes, out):
    """The plain-Keras script for ``strategy``, from the folder to a saved model; returns its test accuracy."""
    import keras
    import numpy as np

    from run import peer_datasets, peer_model
    from transferkit.baselines import create_baseline
    from transferkit.weights import build_base

    keras.utils.set_random_seed(42)
    train, val, test = peer_datasets(root, size, batch_size, 42)
    path = Path(out) / f"peer-{strategy}.keras"
    if strategy == "scratch":
        body = create_baseline("small_convnet", (size, size, 3), num_classes)
        model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255), body])
        return _fit_and_save(model, train, val, test, epochs, path, batch_size)
    if strategy == "feature_extraction":
        conv_base = build_base("vgg16", "hed-bsds500", size)

        def features(dataset):
            pairs = [(conv_base.predict(keras.applications.vgg16.preprocess_input(x), verbose=0), y.numpy())
                     for x, y in dataset]
            return np.concatenate([f for f, _ in pairs]), np.concatenate([y for _, y in pairs])

        train, val, test = features(train), features(val), features(test)
        head = keras.Sequential([keras.Input(train[0].shape[1:]), keras.layers.Flatten(),
                                 keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.5),
                                 keras.layers.Dense(num_classes, activation="softmax")])
        return _fit_and_save(head, train, val, test, epochs, path, batch_size)
    model, base = peer_model(size, num_classes, 0.05)
    accuracy = _fit_and_save(model, train, val, test, epochs, path, batch_size, logits=True)
    if strategy == "frozen_augment":
        return accuracy
    base.trainable = True
    fine_tune_at = [layer.name for layer in base.layers].index("block5_conv1")
    for layer in base.layers[:fine_tune_at]:
        layer.trainable = False
    return _fit_and_save(model, train, val, test, fine_epochs, path, batch_size, learning_rate=1e-5,
                         initial_epoch=epochs, logits=True)


def our_run(strategy, recipe_path, out):
    """``transferkit.run`` at its defaults on the same folder; returns (test accuracy, epochs trained)."""
    import transferkit

    result = transferkit.run(str(recipe_path), strategy=strategy, out=str(out), verbose=0)
    return result.metrics["test_accuracy"], sum(stage["epochs_run"] for stage in result.metrics["stages"])


def figure_whole_runs(size=48, epochs=10, fine_epochs=5, batch_size=32, reps=2, per_split=72, strategies=STRATEGIES):
    """(9) Each strategy's whole-run seconds, transferkit and the plain-Keras peer alternating ``reps`` times."""
    from run import log, recipe_for, write_pngs

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(tmp) / "cache")
        root = Path(tmp) / "png"
        class_names = write_pngs(root, limit=per_split)
        recipe = recipe_for(root, size, batch_size, epochs, fine_epochs, 0.05 * 360)
        recipe_path = Path(tmp) / "whole.yaml"
        recipe_path.write_text(recipe.to_yaml())
        rows = {}
        for strategy in strategies:
            seconds = {"transferkit": [], "peer": []}
            for rep in range(reps):
                for side in (("transferkit", "peer") if rep % 2 == 0 else ("peer", "transferkit")):
                    out = Path(tmp) / f"{side}-{strategy}-{rep}"
                    out.mkdir()
                    started = time.perf_counter()
                    if side == "peer":
                        peer_accuracy = peer_run(strategy, root, size, batch_size, epochs, fine_epochs,
                                                 len(class_names), out)
                    else:
                        accuracy, trained = our_run(strategy, recipe_path, out)
                    seconds[side].append(time.perf_counter() - started)
            ours, peers = min(seconds["transferkit"]), min(seconds["peer"])
            rows[strategy] = {"transferkit_s": ours, "peer_s": peers, "ratio": peers / ours,
                              "transferkit_epochs": trained, "peer_epochs": epochs + (fine_epochs if strategy ==
                                                                                      "finetune" else 0),
                              "transferkit_test_accuracy": accuracy, "peer_test_accuracy": peer_accuracy,
                              "all_s": seconds}
            log(f"    {strategy}: transferkit {ours:.1f} s ({trained} epochs, test {accuracy:.3f}), "
                f"peer {peers:.1f} s ({rows[strategy]['peer_epochs']} epochs, test {peer_accuracy:.3f}): "
                f"{peers / ours:.2f}x")
    return {"image_size": size, "epochs": epochs, "finetune_epochs": fine_epochs, "batch_size": batch_size,
            "files": 3 * per_split, "reps": reps, "strategies": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--out", default=None, help="also merge the figure into this results file")
    args = parser.parse_args()
    figure = figure_whole_runs(reps=args.reps, strategies=args.strategies.split(","))
    if args.out:
        path = Path(args.out)
        results = json.loads(path.read_text()) if path.is_file() else {}
        results["whole_runs"] = figure
        path.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
