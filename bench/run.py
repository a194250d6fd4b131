"""transferkit against plain Keras, measured side by side in one process: ``python bench/run.py [--quick]``.

Every figure is a ratio of two measurements taken in this same run (interleaved and repeated where timing
matters), so a busy machine slows both sides alike. Prints a table and writes ``bench/results.json``.

Figures:
  1. input pipeline: feature extraction from PNG files (decode, resize, preprocess, conv base, written to the
     cache) vs the bare conv base predicting the same images preloaded as an array; target >= 0.9.
  2. feature cache: the feature phase of a second feature_extraction run vs the first; target >= 10x,
     identical features.
  3. training throughput vs a plain-Keras peer written as TF's transfer-learning tutorial writes it
     (image_dataset_from_directory, augmentation layers inside the model, base(x, training=False), float32), same
     images, batch size and augmentation: frozen_augment >= 1.2x, finetune >= 1.0x, transferkit at its default
     mixed_precision (auto); and, without a target, both sides in float32. Images per second come from the
     median training step of each side (epochs interleaved, each stage's first epoch left out).
  4. accuracy parity: every strategy's test accuracy within 1 point of the peer's (or better), same epochs.
  5. boundary caching: finetune epoch (VGG16, block5 unfrozen, no augmentation) on cached block4 activations
     vs on images; target >= 3x.
  6. the conv base forward pass's GFLOP/s as a fraction of a large matmul's, in the same compute dtype.
  7. streamed feature extraction: peak memory for 10x the sample vs 1x, in fresh processes; target <= 1.5x.
  8. the feature-extraction limit, on the shipped demo recipe (its backbone, weights, size and splits):
     feature_extraction's test accuracy minus a scikit-learn logistic regression's (C cross-validated on the
     training split) on the same cached, average-pooled features; target >= 0 points. ``--limit-only`` runs
     this figure alone.
  9. whole runs (``bench/whole_runs.py``): each strategy's ``transferkit.run`` on a 216-file folder at its defaults
     vs a plain-Keras script doing the same job (load, fit with validation, evaluate, save), same maximum epochs,
     alternating; the peer's seconds / transferkit's; target >= 1.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*shuffle=True.*")  # the peer's fit, as the tutorial calls it

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def log(*args):
    print(*args, flush=True)


def rss_mb():
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def write_pngs(root, copies=1, limit=None):
    """The embedded sample as PNG files: ``root/{train,val,test}/<class>/<i>.png`` (train tiled ``copies`` times)."""
    from PIL import Image

    from transferkit.data.embedded import load_sample

    sample = load_sample()
    for split in ("train", "val", "test"):
        images, labels = getattr(sample, split)
        if limit:
            images, labels = images[:limit], labels[:limit]
        for copy in range(copies if split == "train" else 1):
            for i, (image, label) in enumerate(zip(images, labels)):
                folder = Path(root) / split / sample.class_names[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{copy}-{i}.png")
    return sample.class_names


class EpochTimer:
    """A Keras callback recording each epoch's training time (first batch start to last batch end) and the
    time of each of its training steps."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds, self.steps = [], []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = self.end = time.perf_counter()
                self.epoch_steps = []

            def on_train_batch_end(self, batch, logs=None):
                now = time.perf_counter()
                self.epoch_steps.append(now - self.end)
                self.end = now

            def on_epoch_end(self, epoch, logs=None):
                if self.epoch_steps:
                    self.seconds.append(self.end - self.start)
                    self.steps.append(self.epoch_steps)

        return _Timer()


def step_rate(epoch_steps, batch_size):
    """Training images per second from the median step time of the epochs after a stage's first (which traces):
    a step that this machine stalls for seconds, now and then, on either side, does not decide the figure."""
    import numpy as np

    steps = [t for epoch in (epoch_steps[1:] if len(epoch_steps) > 1 else epoch_steps) for t in epoch]
    return batch_size / float(np.median(steps))


# ---------------------------------------------------------------------------------------------------------------
# the plain-Keras peer, as https://www.tensorflow.org/tutorials/images/transfer_learning writes it


def peer_datasets(root, size, batch_size, seed):
    import keras
    import tensorflow as tf

    def load(split, shuffle):
        return keras.utils.image_dataset_from_directory(Path(root) / split, shuffle=shuffle, seed=seed,
                                                        batch_size=batch_size, image_size=(size, size),
                                                        verbose=False)

    autotune = tf.data.AUTOTUNE
    return (load("train", True).prefetch(autotune), load("val", False).prefetch(autotune),
            load("test", False).prefetch(autotune))


def peer_model(size, num_classes, rotation):
    import keras

    from transferkit.weights import build_base

    data_augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                          keras.layers.RandomRotation(rotation)])
    base_model = build_base("vgg16", "hed-bsds500", size)  # = VGG16(include_top=False) with the same weights
    base_model.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = data_augmentation(inputs)
    x = keras.applications.vgg16.preprocess_input(x)
    x = base_model(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs), base_model


def peer_compile(model, learning_rate):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


class Peer:
    """The tutorial's model, trained one epoch at a time so its epochs interleave with transferkit's:
    stage 1 with the base frozen, then block5 unfrozen at a 100x lower learning rate."""

    def __init__(self, root, size, batch_size, seed, num_classes, rotation):
        import keras

        keras.utils.set_random_seed(seed)
        self.train, self.val, self.test = peer_datasets(root, size, batch_size, seed)
        self.model, self.base = peer_model(size, num_classes, rotation)
        peer_compile(self.model, 1e-3)
        self.seconds, self.steps = {"frozen": [], "finetune": []}, {"frozen": [], "finetune": []}
        self.epoch, self.stage = 0, "frozen"
        self.accuracy = {}

    def one_epoch(self):
        timer = EpochTimer()
        self.model.fit(self.train, validation_data=self.val, initial_epoch=self.epoch, epochs=self.epoch + 1,
                       verbose=0, callbacks=[timer])
        self.epoch += 1
        self.seconds[self.stage] += timer.seconds
        self.steps[self.stage] += timer.steps

    def start_finetune(self):
        self.accuracy["frozen"] = float(self.model.evaluate(self.test, verbose=0)[1])
        self.base.trainable = True
        fine_tune_at = [layer.name for layer in self.base.layers].index("block5_conv1")
        for layer in self.base.layers[:fine_tune_at]:
            layer.trainable = False
        peer_compile(self.model, 1e-5)
        self.stage = "finetune"

    def finish(self):
        self.accuracy["finetune"] = float(self.model.evaluate(self.test, verbose=0)[1])


def interleaved(step, from_epoch=0):
    """A callback that runs ``step()`` (one peer epoch) after each of transferkit's epochs from ``from_epoch``."""
    import keras

    class _Interleave(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch >= from_epoch:
                step()

    return _Interleave()


# ---------------------------------------------------------------------------------------------------------------
# transferkit's side


def recipe_for(root, size, batch_size, epochs, fine_epochs, rotation_degrees, mixed_precision="auto"):
    """The bench's own recipe, every key that matters spelled out (independent of the shipped demo recipe);
    ``mixed_precision`` is transferkit's default, ``auto``, unless given."""
    from transferkit.recipes import recipe_from_dict

    stage = {"epochs": epochs, "learning_rate": 1e-3}
    return recipe_from_dict({
        "name": "bench", "data": {"source": "folder", "path": str(root)}, "image_size": size, "backbone": "vgg16",
        "weights": "hed-bsds500", "base_blocks": None, "strategy": "finetune", "seed": 42, "batch_size": batch_size,
        "mixed_precision": mixed_precision,
        "head": {"pooling": "flatten", "units": 256, "dropout": 0.5, "batchnorm": True},
        "augment": {"flip": "horizontal", "rotation": rotation_degrees, "width_shift": 0, "height_shift": 0,
                    "shear": 0, "zoom": 0},
        "feature_extraction": stage, "frozen_augment": {**stage, "augment": True},
        "finetune": {"head_epochs": epochs, "head_learning_rate": 1e-3, "epochs": fine_epochs, "learning_rate": 1e-5,
                     "unfreeze_blocks": 1, "augment": True},
        "scratch": {**stage, "baseline": "small_convnet", "augment": False},
    })


def run_ours(recipe, splits, strategy, callbacks=(), **kwargs):
    """One strategy through the Context API with an epoch timer; returns (timer, test accuracy, trained)."""
    import keras
    import numpy as np

    from transferkit.api import predict_split
    from transferkit.strategies import STRATEGIES, Context
    from transferkit.strategies.runtime import float32_model, precision, resolve_precision

    keras.utils.set_random_seed(recipe.seed)
    timer = EpochTimer()
    ctx = Context(recipe.model_copy(update={"strategy": strategy}), splits, verbose=0,
                  callbacks=[timer, *callbacks])
    with precision(resolve_precision(recipe.mixed_precision)):
        spec = STRATEGIES[strategy]
        # before issue 14's stage runner a strategy was its training function; bench/versus.py measures such commits
        trained = getattr(spec, "train", spec)(ctx, **kwargs)
    model = float32_model(trained.model)
    labels, probabilities = predict_split(model, ctx.data("test"))
    return timer, float(np.mean(probabilities.argmax(1) == labels)), trained


def time_extraction(recipe, splits, key_suffix):
    """Seconds of the feature phase (train + val through the cache) and the features."""
    from transferkit.strategies import Context
    from transferkit.strategies.common import frozen_classifier
    from transferkit.strategies.feature_extraction import extract_split, extractor_of

    ctx = Context(recipe, splits, verbose=0)
    model, base, _ = frozen_classifier(ctx)
    extractor = extractor_of(model, base)
    start = time.perf_counter()
    out = {split: extract_split(ctx, extractor.predict_on_batch, split) for split in ("train", "val")}
    return time.perf_counter() - start, out


# ---------------------------------------------------------------------------------------------------------------
# figures


def figure_pipeline(recipe, splits, reps):
    """(1) feature extraction from files, end to end, vs the bare conv base on a preloaded array."""
    import keras
    import numpy as np

    from transferkit.features import cached_extract, extraction_batches
    from transferkit.layers import Preprocess
    from transferkit.strategies import Context
    from transferkit.strategies.common import frozen_classifier

    ctx = Context(recipe, splits, verbose=0)
    model, base, _ = frozen_classifier(ctx)
    inputs = keras.Input(model.input.shape[1:])
    extractor = keras.Model(inputs, base(model.get_layer("preprocess")(inputs), training=False))
    size, batch = recipe.image_size, recipe.batch_size
    # the same images, decoded, resized and preprocessed beforehand, held in memory
    resized = np.concatenate([x.numpy() for x, _ in extraction_batches(splits.datasets["train"], size, batch)])
    preloaded = np.asarray(Preprocess("caffe")(resized))
    n = len(preloaded)
    ends, bares = [], []
    extractor.predict_on_batch(preloaded[:batch])
    base.predict_on_batch(preloaded[:batch])
    for rep in range(reps):
        start = time.perf_counter()
        cached_extract(f"bench-pipeline-{rep}-{time.time_ns()}", extractor.predict_on_batch,
                       extraction_batches(splits.datasets["train"], size, batch, recipe.data.resize))
        ends.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(0, n, batch):
            base.predict_on_batch(preloaded[i:i + batch])
        bares.append(time.perf_counter() - start)
    end_to_end, bare = min(ends), min(bares)
    return {"images": n, "end_to_end_s": end_to_end, "bare_base_s": bare, "ratio": bare / end_to_end,
            "end_to_end_images_per_s": n / end_to_end, "bare_images_per_s": n / bare}, base, preloaded


def figure_cache(recipe, splits):
    """(2) the feature phase of a second run vs the first, and whether the features are identical."""
    import numpy as np

    first, a = time_extraction(recipe, splits, "first")
    second, b = time_extraction(recipe, splits, "second")
    identical = all(np.array_equal(np.asarray(a[s][0][0]), np.asarray(b[s][0][0])) for s in a)
    hits = sum(b[s][1] for s in b)
    return {"first_s": first, "second_s": second, "ratio": first / second, "identical": identical,
            "second_run_hits": hits}


def figure_conv_efficiency(base, preloaded, batch, reps):
    """(6) conv-base forward GFLOP/s over a large matmul's GFLOP/s, measured back to back."""
    import keras
    import tensorflow as tf

    flops = 0
    for layer in base.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            flops += 2 * h * w * kh * kw * cin * cout
    n = len(preloaded)
    side = 2048
    dtype = base.layers[-1].compute_dtype
    a = tf.cast(tf.random.normal((side, side)), dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()
    conv_rates, matmul_rates = [], []
    for _ in range(reps):
        start = time.perf_counter()
        for i in range(0, n, batch):
            base.predict_on_batch(preloaded[i:i + batch])
        conv_rates.append(flops * n / (time.perf_counter() - start) / 1e9)
        start, k = time.perf_counter(), 10
        for _ in range(k):
            matmul(a).numpy()
        matmul_rates.append(2 * side ** 3 * k / (time.perf_counter() - start) / 1e9)
    conv, mm = max(conv_rates), max(matmul_rates)
    return {"conv_gflop_per_image": flops / 1e9, "conv_gflops": conv, "matmul_gflops": mm, "ratio": conv / mm,
            "batch": batch, "matmul_side": side, "dtype": dtype}


def figure_float32(root, recipe, splits, seed, class_names, rotation, epochs):
    """(3, float32) transferkit's finetune in float32, its head stage and its fine-tuning stage each interleaved
    epoch by epoch with the same stage of a fresh float32 peer: what transferkit gains without mixed precision."""
    peer = Peer(root, recipe.image_size, recipe.batch_size, seed, len(class_names), rotation)

    def step():  # after each of transferkit's epochs; the peer fine-tunes when transferkit does
        peer.one_epoch()
        if peer.epoch == epochs:
            peer.start_finetune()

    float32 = recipe.model_copy(update={"mixed_precision": "none"})
    timer, accuracy, _ = run_ours(float32, splits, "finetune", callbacks=[interleaved(step)])
    peer.finish()
    batch = recipe.batch_size
    frozen, fine = step_rate(timer.steps[:epochs], batch), step_rate(timer.steps[epochs:], batch)
    peer_frozen, peer_fine = step_rate(peer.steps["frozen"], batch), step_rate(peer.steps["finetune"], batch)
    return {"frozen_images_per_s": frozen, "peer_frozen_images_per_s": peer_frozen, "frozen_ratio": frozen / peer_frozen,
            "finetune_images_per_s": fine, "peer_finetune_images_per_s": peer_fine, "finetune_ratio": fine / peer_fine,
            "finetune_test_accuracy": accuracy, "peer_finetune_test_accuracy": peer.accuracy["finetune"],
            "epoch_s": timer.seconds, "peer_epoch_s": peer.seconds}


def figure_boundary(recipe, splits, epochs, reps, size):
    """(5) finetune stage-2 epoch time, block5 unfrozen, no augmentation: on images vs on cached activations.

    The two paths run alternately ``reps`` times; an epoch's time is the training split's images at the rate
    of the median step (:func:`step_rate`), and the fastest repetition of each side counts.
    """
    fine = recipe.model_copy(update={"image_size": size, "finetune": recipe.finetune.model_copy(
        update={"augment": False, "head_epochs": 0, "epochs": epochs, "unfreeze_blocks": 1})})
    times, steps = {"images": [], "cached": []}, {"images": [], "cached": []}
    for _ in range(reps):
        cached_timer, _, trained = run_ours(fine, splits, "finetune")
        image_timer, _, _ = run_ours(fine, splits, "finetune", boundary_cache=False)
        for side, timer in (("cached", cached_timer), ("images", image_timer)):
            times[side].append(timer.seconds)
            steps[side].append(timer.steps)
    n = splits.counts["train"]
    cached, images = (n / max(step_rate(run, recipe.batch_size) for run in steps[side]) for side in ("cached", "images"))
    return {"boundary": trained.info["boundary_cache"], "unfrozen": trained.info["unfrozen_layers"],
            "image_size": size, "epochs": epochs, "images_epoch_s": images, "cached_epoch_s": cached,
            "ratio": images / cached, "epoch_s": times}


def figure_memory(size, batch, copies_list, quick):
    """(7) peak RSS of feature extraction over 1x and 10x the sample's train split, each in a fresh process."""
    out = {}
    for copies in copies_list:
        proc = subprocess.run([sys.executable, __file__, "--extract-child", str(copies), "--size", str(size),
                               "--batch", str(batch)] + (["--quick"] if quick else []),
                              capture_output=True, text=True, timeout=900)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            raise RuntimeError(f"extraction child failed: {proc.stderr[-2000:]}")
        out[f"{copies}x"] = json.loads(lines[-1])
    first, last = out[f"{copies_list[0]}x"], out[f"{copies_list[-1]}x"]
    out["ratio"] = last["extract_peak_mb"] / first["extract_peak_mb"]
    out["growth_mb"] = last["extract_peak_mb"] - first["extract_peak_mb"]
    return out


def extract_child(copies, size, batch, quick):
    """In a fresh process: write ``copies`` x the train split as PNGs, then run the cached feature extraction."""
    from transferkit.data.sources import load_data
    from transferkit.runs import PeakMemory

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(tmp) / "cache")
        write_pngs(Path(tmp) / "png", copies=copies, limit=100 if quick else None)
        recipe = recipe_for(Path(tmp) / "png", size, batch, 1, 1, 0)
        splits = load_data(recipe.data, recipe.seed)
        before = rss_mb()
        with PeakMemory(0.02) as memory, policy_of(recipe):
            seconds, out = time_extraction(recipe, splits, "child")
        features = out["train"][0][0]
        print(json.dumps({"copies": copies, "train_images": int(splits.counts["train"]), "seconds": seconds,
                          "rss_before_mb": before, "extract_peak_mb": memory.peak_mb,
                          "features_mb_on_disk": features.nbytes / 1e6}), flush=True)


def figure_limit():
    """(8) the demo's feature_extraction test accuracy vs a logistic regression on the same cached features."""
    from transferkit.data.sources import load_data
    from transferkit.features import predictor
    from transferkit.probe import probe_accuracy
    from transferkit.recipes import load_recipe
    from transferkit.strategies import Context
    from transferkit.strategies.common import frozen_classifier
    from transferkit.strategies.feature_extraction import extract_split, extractor_of

    recipe = load_recipe("demo", strategy="feature_extraction")
    splits = load_data(recipe.data, recipe.seed)
    _, accuracy, _ = run_ours(recipe, splits, "feature_extraction")
    with policy_of(recipe):  # the features the run cached (train) and the same extractor on the test split
        ctx = Context(recipe, splits, verbose=0)
        model, base, _ = frozen_classifier(ctx)
        predict = predictor(extractor_of(model, base))
        (train, hit), test = extract_split(ctx, predict, "train"), extract_split(ctx, predict, "test")[0]
    started = time.perf_counter()
    limit = probe_accuracy(train, test, seed=recipe.seed)
    return {"backbone": recipe.backbone, "weights": recipe.weights, "image_size": recipe.image_size,
            "base_blocks": recipe.base_blocks, "train_images": int(splits.counts["train"]),
            "feature_extraction_test_accuracy": accuracy, "logistic_regression_test_accuracy": limit,
            "points": 100 * (accuracy - limit), "train_features_from_cache": bool(hit),
            "probe_s": time.perf_counter() - started}


def limit_only(out):
    """``--limit-only``: figure 8 alone, merged into an existing results file."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(tmp) / "cache")
        limit = figure_limit()
    path = Path(out)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["feature_extraction_limit"] = limit
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    log(f"8 {limit['backbone']} ({limit['weights']}, {limit['image_size']} px): feature_extraction "
        f"{limit['feature_extraction_test_accuracy']:.3f}, logistic regression "
        f"{limit['logistic_regression_test_accuracy']:.3f}: {limit['points']:+.1f} points (target >= 0) "
        f"{verdict(limit['points'], 0)}")


# ---------------------------------------------------------------------------------------------------------------


def policy_of(recipe):
    """The recipe's dtype policy, set for the duration of a ``with`` block, as a run sets it."""
    from transferkit.strategies.runtime import precision, resolve_precision

    return precision(resolve_precision(recipe.mixed_precision))


def machine():
    import keras
    import tensorflow as tf

    from transferkit.strategies.runtime import cpu_supports_bf16

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu_count": os.cpu_count(), "cpu": model, "bf16": cpu_supports_bf16(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version(),
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def verdict(value, target, higher=True):
    ok = value >= target if higher else value <= target
    return "ok" if ok else "MISS"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run (< 3 minutes)")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--limit-only", action="store_true", help="only figure 8, merged into --out")
    parser.add_argument("--extract-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.extract_child:
        return extract_child(args.extract_child, args.size, args.batch, args.quick)
    if args.limit_only:
        return limit_only(args.out)

    quick = args.quick
    size = args.size or 32
    batch, seed = 32, 42
    epochs, fine_epochs = (3, 3) if quick else (5, 4)
    rotation = 0.05  # the tutorial's RandomRotation factor (fraction of a turn); 0.05 = 18 degrees
    reps = 2 if quick else 3
    began = time.perf_counter()
    results = {"machine": machine(), "quick": quick,
               "settings": {"backbone": "vgg16", "weights": "hed-bsds500", "image_size": size, "batch_size": batch,
                            "epochs": epochs, "finetune_epochs": fine_epochs, "augment": f"flip + rotation {rotation}"}}
    log(f"machine: {results['machine']}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(tmp) / "cache")
        root = Path(tmp) / "png"
        class_names = write_pngs(root, limit=300 if quick else None)
        from transferkit.data.sources import load_data
        from transferkit.runs import PeakMemory
        from transferkit.strategies.runtime import resolve_precision

        recipe = recipe_for(root, size, batch, epochs, fine_epochs, rotation * 360)
        splits = load_data(recipe.data, recipe.seed)
        results["settings"]["images"] = dict(splits.counts)
        log(f"data: {dict(splits.counts)} PNG files, {len(class_names)} classes, {size}x{size}")
        policy = resolve_precision(recipe.mixed_precision) or "float32"
        results["settings"]["precision"] = {"transferkit": policy, "peer": "float32"}
        log(f"transferkit's dtype policy: {policy} (mixed_precision: {recipe.mixed_precision}); the peer's: float32")
        with PeakMemory() as memory:
            with policy_of(recipe):
                log("(1) input pipeline ...")
                results["pipeline"], base, preloaded = figure_pipeline(recipe, splits, reps + 2)
                log("(6) conv efficiency ...")
                results["conv_efficiency"] = figure_conv_efficiency(base, preloaded, batch, reps)
                log("(2) feature cache ...")
                results["feature_cache"] = figure_cache(recipe, splits)
            log("(3, 4) training: peer and strategies ...")
            # the peer's epochs run interleaved with transferkit's: one of theirs after each of ours
            peer = Peer(root, size, batch, seed, len(class_names), rotation)
            ours = {}
            for strategy in ("frozen_augment", "finetune", "feature_extraction", "scratch"):
                if strategy == "frozen_augment":
                    more = [interleaved(peer.one_epoch)]
                elif strategy == "finetune":
                    peer.start_finetune()
                    more = [interleaved(peer.one_epoch, from_epoch=epochs)]
                else:
                    more = []
                timer, accuracy, trained = run_ours(recipe, splits, strategy, callbacks=more)
                ours[strategy] = {"epoch_s": timer.seconds, "step_s": timer.steps, "test_accuracy": accuracy,
                                  "stages": [row["stage"] for row in trained.history]}
                log(f"    {strategy}: test accuracy {accuracy:.3f}")
            peer.finish()
            peer = {"frozen_epoch_s": peer.seconds["frozen"], "finetune_epoch_s": peer.seconds["finetune"],
                    "frozen_step_s": peer.steps["frozen"], "finetune_step_s": peer.steps["finetune"],
                    "frozen_test_accuracy": peer.accuracy["frozen"],
                    "finetune_test_accuracy": peer.accuracy["finetune"]}
            fa_rate = step_rate(ours["frozen_augment"]["step_s"][:epochs], batch)
            peer_rate = step_rate(peer["frozen_step_s"], batch)
            ft_rate = step_rate(ours["finetune"]["step_s"][epochs:], batch)
            peer_ft_rate = step_rate(peer["finetune_step_s"], batch)
            results["throughput"] = {
                "frozen_augment_images_per_s": fa_rate, "peer_frozen_images_per_s": peer_rate,
                "frozen_augment_ratio": fa_rate / peer_rate,
                "finetune_images_per_s": ft_rate, "peer_finetune_images_per_s": peer_ft_rate,
                "finetune_ratio": ft_rate / peer_ft_rate}
            parity = {}
            for strategy, row in ours.items():
                reference = peer["finetune_test_accuracy"] if strategy == "finetune" else peer["frozen_test_accuracy"]
                parity[strategy] = {"test_accuracy": row["test_accuracy"], "peer_test_accuracy": reference,
                                    "points": 100 * (row["test_accuracy"] - reference)}
            results["accuracy"] = parity
            results["peer"], results["ours"] = peer, ours
            log("(3) training throughput, both sides in float32 ...")
            results["throughput_float32"] = figure_float32(root, recipe, splits, seed, class_names, rotation, epochs)
            log("(5) boundary caching ...")
            results["boundary_cache"] = figure_boundary(recipe, splits, 3 if quick else 4, 1 if quick else 2,
                                                        48 if quick else 64)
        results["peak_rss_mb"] = {"main_process_during_figures_1_to_6": memory.peak_mb, "ru_maxrss": peak_rss_mb()}
    log("(7) streamed extraction memory ...")
    results["memory"] = figure_memory(size, batch, (1, 10), quick)
    log("(8) feature-extraction limit on the demo ...")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRANSFERKIT_CACHE"] = str(Path(tmp) / "cache")
        results["feature_extraction_limit"] = figure_limit()
    log("(9) whole runs against the plain-Keras scripts ...")
    from whole_runs import figure_whole_runs

    results["whole_runs"] = figure_whole_runs(reps=1 if quick else 2)
    results["wall_time_s"] = time.perf_counter() - began

    table = [
        ("1 input pipeline: files end to end / bare base on array", results["pipeline"]["ratio"], 0.9, "x"),
        ("2 feature cache: 1st / 2nd feature phase", results["feature_cache"]["ratio"], 10, "x"),
        ("3 frozen_augment images/s / peer", results["throughput"]["frozen_augment_ratio"], 1.2, "x"),
        ("3 finetune images/s / peer", results["throughput"]["finetune_ratio"], 1.0, "x"),
        ("3 frozen stage images/s / peer, both float32", results["throughput_float32"]["frozen_ratio"], None, "x"),
        ("3 finetune images/s / peer, both float32", results["throughput_float32"]["finetune_ratio"], None, "x"),
        *[(f"4 {s} test acc - peer (points)", p["points"], -1.0, "pt") for s, p in results["accuracy"].items()],
        (f"5 boundary cache ({results['boundary_cache']['image_size']} px): epoch images / activations",
         results["boundary_cache"]["ratio"], 3, "x"),
        ("6 conv base GFLOP/s / matmul GFLOP/s", results["conv_efficiency"]["ratio"], None, ""),
        ("7 extraction peak RSS 10x / 1x sample", results["memory"]["ratio"], 1.5, "x"),
        ("8 demo feature_extraction - logistic regression (points)", results["feature_extraction_limit"]["points"],
         0.0, "pt"),
        *[(f"9 {s} whole run: peer s / transferkit s", row["ratio"], 1.0, "x")
          for s, row in results["whole_runs"]["strategies"].items()],
    ]
    results["table"] = []
    log("")
    log(f"{'figure':58s} {'value':>9s} {'target':>8s}   (transferkit in {policy}, the peer in float32)")
    for name, value, target, unit in table:
        if target is None:
            status, shown = "", "-"
        elif name.startswith("7"):
            status, shown = verdict(value, target, higher=False), f"<= {target}"
        else:
            status, shown = verdict(value, target), f">= {target}"
        log(f"{name:58s} {value:9.2f} {shown:>8s} {status}")
        results["table"].append({"figure": name, "value": value, "target": shown, "status": status or None})
    c = results["conv_efficiency"]
    log(f"   conv base {c['conv_gflops']:.1f} GFLOP/s, matmul {c['matmul_gflops']:.1f} GFLOP/s")
    log(f"   feature cache identical: {results['feature_cache']['identical']}; "
        f"features match: first {results['feature_cache']['first_s']:.2f} s, "
        f"second {results['feature_cache']['second_s']:.3f} s")
    m = results["memory"]
    log(f"   extraction peak RSS: 1x {m['1x']['extract_peak_mb']:.0f} MB, 10x {m['10x']['extract_peak_mb']:.0f} MB "
        f"({m['10x']['train_images']} images)")
    log(f"   peak RSS of this process: {results['peak_rss_mb']['ru_maxrss']:.0f} MB; "
        f"wall time {results['wall_time_s']:.0f} s")
    Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
