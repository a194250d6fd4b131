"""The ``transferkit`` command: parses arguments and calls the Python API, nothing more.

Mistakes and missing resources print one ``error:`` line and exit 2 (``--debug`` shows the traceback).
"""
import contextlib
import functools
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402


def _start_tensorflow(debug):
    """Import TensorFlow and initialise its devices, quietly unless debugging."""
    from transferkit.console import native_stderr_silenced

    with contextlib.nullcontext() if debug else native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def _friendly(command=None, *, tensorflow=True):
    """Run ``command``; a TransferkitError (or a bad file) becomes one line on stderr and exit code 2.
    ``tensorflow=False`` for commands that never need it, so they answer at once."""
    if command is None:
        return functools.partial(_friendly, tensorflow=tensorflow)

    @functools.wraps(command)
    def wrapper(*args, debug=False, **kwargs):
        if tensorflow:
            _start_tensorflow(debug)
        from transferkit.errors import TransferkitError

        try:
            return command(*args, **kwargs)
        except (TransferkitError, OSError) as err:
            if debug:
                raise
            message = str(err) if isinstance(err, TransferkitError) else f"{err.strerror or err}: {err.filename}"
            click.echo(f"error: {message}", err=True)
            sys.exit(130 if type(err).__name__ == "RunInterrupted" else 2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(wrapper)


class _Rate(click.ParamType):
    """A learning rate: a positive number, or ``auto`` (the range test's suggestion)."""

    name = "RATE|auto"

    def convert(self, value, param, ctx):
        if value == "auto":
            return value
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = 0.0
        if not rate > 0:
            self.fail(f"{value!r} is not a positive number or auto", param, ctx)
        return rate


RATE = _Rate()


class _Sweep(click.ParamType):
    """The rates a range test sweeps: ``START,END``, two positive numbers, START below END."""

    name = "START,END"

    def convert(self, value, param, ctx):
        try:
            start, end = (float(part) for part in str(value).split(","))
        except ValueError:
            start = end = 0.0
        if not 0 < start < end:
            self.fail(f"{value!r} is not START,END with 0 < START < END (e.g. 1e-6,1)", param, ctx)
        return start, end


STORED = "stored"  # --reject without a value: the threshold the source stores


class _Probability(click.ParamType):
    """A probability threshold: a number from 0 to 1."""

    name = "THRESHOLD"

    def convert(self, value, param, ctx):
        if value == STORED:
            return value
        value = value.strip() if isinstance(value, str) else value
        try:
            threshold = float(value)
        except (TypeError, ValueError):
            last = "the images" if ctx is not None and ctx.command.name == "predict" else "SOURCE"
            self.fail(f"{value!r} is not a probability from 0 to 1 (put --reject after {last}, or give it "
                      f"a number)", param, ctx)
        if not 0 <= threshold <= 1:
            self.fail(f"{value!r} is not a probability from 0 to 1", param, ctx)
        return threshold


class _RejectCommand(click.Command):
    """A command with ``--reject [THRESHOLD]``: a negative number after it is its value (click reads ``-0.1`` as
    an option ``-0``, even as ``--reject=-0.1``), so that the value's own error is the one shown."""

    def parse_args(self, ctx, args):
        joined, i = [], 0
        while i < len(args):
            if args[i] == "--reject" and i + 1 < len(args) and re.fullmatch(r"-\d*\.?\d+(e-?\d+)?", args[i + 1]):
                joined += ["--reject", f" {args[i + 1]}"]  # a leading space: click no longer sees an option
                i += 2
            else:
                joined.append(args[i])
                i += 1
        return super().parse_args(ctx, joined)


def _strategies():
    """The registered strategies' names, from the catalog snapshot (no TensorFlow at import)."""
    from transferkit.listing import listing

    return ", ".join(name for name, _ in listing("strategies"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="transferkit")
def main():
    """transferkit: transfer learning for image classification, best practice built in."""


@main.command()
@click.argument("recipe", required=False)
@click.option("--resume", type=click.Path(file_okay=False), help="Continue a stopped run from its last completed epoch.")
@click.option("--strategy", help=f"One of {_strategies()}.")
@click.option("--backbone", help="A backbone name (transferkit list backbones), or auto: the best linear probe "
                                 "of the training images among the backbones with offline weights.")
@click.option("--weights", help="imagenet, none, hed-bsds500 (VGG16, offline) or a weights file.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of the strategy's (last) stage.")
@click.option("--image-size", type=click.IntRange(min=1), help="Input height and width in pixels.")
@click.option("--lr", type=RATE, help="Learning rate of the strategy's (last) stage; auto: the range test's "
                                      "suggestion (transferkit lr-find).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per batch (--set batch_size=N).")
@click.option("--data-dir", help="Folder of prepared tfds data (else TFDS_DATA_DIR or ~/tensorflow_datasets).")
@click.option("--data", "data_path", help="A folder of images, one subfolder per class, instead of the recipe's data.")
@click.option("--out", default="runs", show_default=True, help="Parent folder of run directories.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key, e.g. finetune.unfreeze_blocks=2.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
@click.option("--mixed-precision", "mixed_precision", metavar="POLICY",
              type=click.Choice(["none", "auto", "mixed_float16", "mixed_bfloat16"]),
              help="Keras dtype policy for this run (--set mixed_precision=POLICY); auto picks one for the hardware.")
@click.option("--jit-compile", "jit_compile", is_flag=True, default=None,
              help="Compile the training steps with XLA (--set jit_compile=true).")
@click.option("--distribute", type=click.Choice(["none", "mirrored", "multiworker"]),
              help="Train on every local GPU (mirrored) or on the TF_CONFIG cluster (multiworker); "
                   "batch size per replica, learning rate scaled linearly (--set distribute=...).")
@_friendly
def run(recipe, resume, strategy, backbone, weights, epochs, image_size, lr, batch_size, data_dir, data_path, out,
        overrides, quiet, mixed_precision, jit_compile, distribute):
    """Train RECIPE (a shipped name such as demo or cats_dogs, or a YAML path) and write a run directory.

    With --resume RUN_DIR instead, continue a run that was killed or interrupted.
    """
    from transferkit.api import run as run_recipe
    from transferkit.errors import TransferkitError

    if bool(recipe) == bool(resume):
        raise TransferkitError("give a RECIPE to run, or --resume RUN_DIR, not both" if recipe else
                               "give a RECIPE (transferkit list recipes) or --resume RUN_DIR")
    overrides = list(overrides) + ([f"mixed_precision={mixed_precision}"] if mixed_precision else []) + \
        (["jit_compile=true"] if jit_compile else []) + ([f"distribute={distribute}"] if distribute else []) + \
        ([f"batch_size={batch_size}"] if batch_size else [])
    result = run_recipe(recipe, resume=resume, strategy=strategy, backbone=backbone, weights=weights, epochs=epochs,
                        learning_rate=lr,
                        image_size=image_size, data=data_path, data_dir=data_dir, out=out, overrides=overrides,
                        verbose=0 if quiet else 2)
    m = result.metrics
    model = m["baseline"] or f"{m['backbone']} ({m['weights']})"
    click.echo(f"\n{m['recipe']} / {m['strategy']} / {model}")
    click.echo(f"  test accuracy  {m['test_accuracy']:.4f}   (loss {m['test_loss']:.4f})")
    if m["best_val_accuracy"] is not None:
        click.echo(f"  best val acc   {m['best_val_accuracy']:.4f}")
    calibration = m["calibration"]
    click.echo(f"  calibration    temperature {calibration['temperature']:.3f}, test ECE "
               f"{calibration['ece_test_before']:.4f} -> {calibration['ece_test']:.4f}" if calibration["temperature"]
               else f"  calibration    none: {calibration['not_calibrated']}")
    click.echo(f"  parameters     {m['trainable_params']:,} trainable of {m['total_params']:,}")
    click.echo(f"  wall time      {m['wall_time_s']:.1f} s   ({m['precision']})")
    click.echo(f"  run directory  {result.run_dir}")
    for name in sorted(p.name for p in result.run_dir.iterdir()):
        click.echo(f"    {name}")


@main.command("list")
@click.argument("what", type=click.Choice(["backbones", "baselines", "strategies", "recipes", "samples", "weights"]))
@_friendly(tensorflow=False)
def list_(what):
    """List what transferkit knows: backbones, baselines, strategies, recipes, samples (the data sets it ships,
    for data: {source: sample, name: NAME}) or weights sources."""
    from transferkit.listing import listing

    for name, description in listing(what):
        click.echo(f"{name:20s} {description}")


@main.command("export")
@click.argument("run_dir")
@click.option("--format", "format_", type=click.Choice(["savedmodel", "keras", "tflite", "onnx"]),
              default="savedmodel", show_default=True, help="The artifact to write.")
@click.option("--out", help="Folder to write (default RUN_DIR/export/FORMAT).")
@click.option("--data", "data_path", help="A folder of class subfolders to measure accuracy on (default: the run's "
                                          "own test split).")
@click.option("--max-accuracy-drop", type=float, default=1.0, show_default=True, metavar="POINTS",
              help="Refuse an artifact whose accuracy is more than POINTS percentage points below the model's.")
@click.option("--quantize", type=click.Choice(["float16", "dynamic", "int8"]),
              help="TFLite only: float16 weights, dynamic-range int8 weights, or full int8 calibrated on training "
                   "images (default out RUN_DIR/export/tflite-MODE).")
@click.option("--uint8-input", is_flag=True, help="With --quantize int8: a uint8 input tensor (raw pixels).")
@click.option("--calibration", help="With --quantize int8: a folder of images to calibrate on (default: the run's "
                                    "training images).")
@_friendly
def export_(run_dir, format_, out, data_path, max_accuracy_drop, quantize, uint8_input, calibration):
    """Export the model of RUN_DIR, reload it, check it predicts as the in-memory model does, and measure its
    accuracy, size and latency."""
    from transferkit.exporters import export

    manifest = export(run_dir, format_, out, data=data_path, max_accuracy_drop=max_accuracy_drop, quantize=quantize,
                      uint8_input=uint8_input, calibration=calibration)
    parity, measured = manifest["parity"], manifest["measured"]
    click.echo(f"{format_} export in {manifest['out']}")
    for name in manifest["files"] + ["export.json"]:
        click.echo(f"    {name}")
    if "quantization" in manifest:
        quantization = manifest["quantization"]
        click.echo(f"  quantized {quantization['mode']}{', uint8 input' if quantization['uint8_input'] else ''}"
                   + (f", calibrated on {quantization['calibration']}" if "calibration" in quantization else ""))
    tolerance = f"tolerance {parity['tolerance']:g}" if parity["tolerance"] is not None else "no tolerance: quantized"
    click.echo(f"  parity    max abs diff {parity['max_abs_diff']:.2e} on {parity['sample_images']} sample images "
               f"({tolerance})")
    click.echo(f"  accuracy  {measured['accuracy']:.4f} (model {measured['model_accuracy']:.4f}) on "
               f"{measured['test_images']} images, {measured['data']}")
    click.echo(f"  size      {measured['size_bytes'] / 1e6:.2f} MB "
               f"(model.keras {measured['model_size_bytes'] / 1e6:.2f} MB)")
    click.echo(f"  latency   {measured['latency_ms']:.2f} ms per image in {measured['runtime']} "
               f"(model {measured['model_latency_ms']:.2f} ms in {measured['model_runtime']})")


@main.command("runs")
@click.option("--out", default="runs", show_default=True, help="The parent folder of the run directories.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_friendly(tensorflow=False)
def runs_(out, as_json):
    """One line per run: name, recipe, data, strategy, network, status, test accuracy, wall time, date."""
    import json

    from transferkit.run_index import list_runs, table

    rows = list_runs(out)
    click.echo(json.dumps(rows, indent=2) if as_json else table(rows))


@main.command("predict", cls=_RejectCommand)
@click.argument("source")
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Labels per image.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--reject", type=_Probability(), is_flag=False, flag_value=STORED, metavar="[THRESHOLD]",
              help="Answer unknown when the top probability is below THRESHOLD (default: the one SOURCE stores, "
                   "chosen on its validation split); put it after the images or give it a number.")
@_friendly
def predict_(source, images, top_k, as_json, reject):
    """Classify IMAGES (files, or folders of them, searched recursively) with SOURCE: a run directory or an
    export (SavedModel, Keras, TFLite or ONNX: its folder or its model file)."""
    import json

    from transferkit.errors import TransferkitError
    from transferkit.predict import image_files, load, read_image

    predictor = load(source)
    threshold = None if reject is None else predictor.threshold(None if reject == STORED else reject)
    images = image_files(images)
    readable, results = [], {}
    for path in images:
        try:
            readable.append((path, read_image(path)))
        except TransferkitError as err:
            click.echo(f"error: {err}", err=True)
            results[path] = {"image": path, "error": str(err)}
    probabilities = predictor.predict([array for _, array in readable])
    answered = predictor.answers(probabilities, threshold) if threshold is not None else [None] * len(readable)
    for (path, _), top, answer in zip(readable, predictor.top_k(probabilities, top_k), answered):
        results[path] = {"image": path, "predictions": [{"label": label, "probability": p} for label, p in top]}
        if threshold is not None:
            results[path].update(answer=answer, reject_threshold=threshold)
    ordered = [results[path] for path in images]
    if as_json:
        click.echo(json.dumps(ordered, indent=2))
    else:
        for result in ordered:
            if "predictions" in result:
                answers = "  ".join(f"{p['label']} {p['probability']:.4f}" for p in result["predictions"])
                if result.get("answer") == "unknown":
                    answers = f"unknown (top probability below {threshold:.4f}: {answers})"
                click.echo(f"{result['image']}: {answers}")
    if len(readable) < len(images):
        sys.exit(2)


@main.command("evaluate")
@click.argument("source")
@click.option("--data", "data_path", help="A folder of class subfolders (default: the run's own test split).")
@click.option("--tta", type=click.IntRange(1, 12), default=1, show_default=True,
              help="Test-time views averaged: original, flip, 5 crops, 5 flipped crops.")
@click.option("--tta-flips/--no-tta-flips", default=None,
              help="Use the flipped views (default: only if the run's recipe flipped training images).")
@click.option("--out", help="Where to write confusion_matrix.png and evaluation.json (default SOURCE's folder).")
@_friendly
def evaluate_(source, data_path, tta, tta_flips, out):
    """Accuracy, per-class precision and recall and a confusion matrix of SOURCE: a run directory or an export
    of it (any format, run in its own runtime; the run's test split is found through its export.json)."""
    from transferkit.evaluation import evaluate_run

    report = evaluate_run(source, data=data_path, tta=tta, out=out, flips=tta_flips)
    click.echo(f"{report['num_examples']} images, {report['data']}, {tta} view{'s' if tta > 1 else ''}, "
               f"{report['runtime']}")
    click.echo(f"  accuracy  {report['accuracy']:.4f}   (loss {report['loss']:.4f})")
    width = max(len(name) for name in report["per_class"])
    click.echo(f"  {'class':{width}s}  precision  recall  support")
    for name, row in report["per_class"].items():
        cells = [f"{row[key]:.4f}" if row[key] is not None else "-" for key in ("precision", "recall")]
        click.echo(f"  {name:{width}s}  {cells[0]:>9s}  {cells[1]:>6s}  {row['support']:7d}")
    for path in report["files"]:
        click.echo(f"  wrote {path}")


@main.command("serve", cls=_RejectCommand)
@click.argument("source")
@click.option("--port", type=click.IntRange(0, 65535), default=8501, show_default=True,
              help="The port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0: every interface of this machine).")
@click.option("--name", default="model", show_default=True, help="The model's name in the URLs: /v1/models/NAME.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=10 * 2**20, show_default=True,
              help="The largest request body taken; a larger one is refused with 413.")
@click.option("--reject", type=_Probability(), is_flag=False, flag_value=STORED, metavar="[THRESHOLD]",
              help="Answer unknown when the top probability is below THRESHOLD (default: the one SOURCE stores, "
                   "chosen on its validation split).")
@_friendly
def serve(source, port, host, name, max_bytes, reject):
    """Serve SOURCE (a run directory or an export of any format) over HTTP until Ctrl-C: TensorFlow Serving's
    REST API (POST /v1/models/NAME:predict, :explain for Grad-CAM) and, at /, a page to drop images on."""
    from transferkit.serve import make_server

    server = make_server(source, host=host, port=port, name=name, max_bytes=max_bytes,
                         reject=False if reject is None else None if reject == STORED else reject)
    rejecting = f", unknown below {server.threshold:.4f}" if server.threshold is not None else ""
    click.echo(f"serving {source} as '{name}' at {server.url}  (POST {server.url}v1/models/{name}:predict"
               f"{rejecting}; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


@main.group()
def data():
    """Check a data set before training, audit it for near-duplicates and label issues, preview its augmentation."""


@data.command("check")
@click.argument("source", metavar="DIR_OR_RECIPE")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. seed=1.")
@click.option("--data-dir", help="Folder of prepared tfds data (else TFDS_DATA_DIR or ~/tensorflow_datasets).")
@_friendly
def data_check(source, as_json, overrides, data_dir):
    """Images per class per split, unreadable files, duplicates across splits and class imbalance of
    DIR_OR_RECIPE (a folder of images or a recipe). Exits 0 when clean, 1 when problems are found."""
    import json

    from transferkit.data.check import check_data, recipe_for

    recipe = recipe_for(source, overrides, data_dir)
    report = check_data(recipe.data, recipe.seed)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())
    sys.exit(1 if report.problems else 0)


@data.command("preview")
@click.argument("recipe", metavar="RECIPE_OR_DIR")
@click.option("--out", default="augment-preview.png", show_default=True, help="The PNG to write.")
@click.option("--n", "count", type=click.IntRange(1, 64), default=8, show_default=True, help="Training images shown.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key: augment.zoom=0.3.")
@click.option("--data-dir", help="Folder of prepared tfds data (else TFDS_DATA_DIR or ~/tensorflow_datasets).")
@_friendly
def data_preview(recipe, out, count, overrides, data_dir):
    """Write a PNG grid of training images and augmented copies of each: what the network sees."""
    from transferkit.data.check import recipe_for
    from transferkit.data.preview import write_preview

    path = write_preview(recipe_for(recipe, overrides, data_dir), out, count)
    click.echo(f"wrote {path}: {count} training images, each followed by 5 augmented copies")


@data.command("audit")
@click.argument("source", metavar="DIR_OR_RECIPE")
@click.option("--backbone", help="The backbone whose features are compared (default: the recipe's; auto: the best "
                                 "linear probe).")
@click.option("--out", default="audit", show_default=True, help="Folder for audit.csv and audit.png.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key: image_size=96.")
@click.option("--data-dir", help="Folder of prepared tfds data (else TFDS_DATA_DIR or ~/tensorflow_datasets).")
@_friendly
def data_audit(source, backbone, out, overrides, data_dir):
    """Near-duplicates across splits and label-issue candidates in DIR_OR_RECIPE (a folder of images or a
    recipe), from a backbone's features: a CSV and a grid of what it flags (needs transferkit[audit])."""
    from transferkit.data.audit import audit_data, need_cleanlab

    need_cleanlab()
    report = audit_data(source, backbone=backbone, out=out, overrides=overrides, data_dir=data_dir)
    click.echo(report.format())
    for path in report.files:
        click.echo(f"wrote {path}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.argument("image", type=click.Path())
@click.option("--class", "class_name", help="Explain this class instead of the top prediction.")
@click.option("--layer", help="The conv layer to explain (default: the last one).")
@click.option("--out", type=click.Path(dir_okay=False), help="The PNG to write (default: RUN_DIR/explain/).")
@_friendly
def explain(run_dir, image, class_name, layer, out):
    """Grad-CAM heatmap of IMAGE for the model in RUN_DIR (or a Keras export), with the top predictions."""
    from transferkit.explain import explain_image

    click.echo(f"wrote {explain_image(run_dir, image, class_name=class_name, out=out, layer=layer)}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--top", type=click.IntRange(min=1), default=9, show_default=True, help="Test images shown.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the PNGs and CSVs (default: RUN_DIR/inspect).")
@_friendly
def inspect(run_dir, top, out):
    """The test images of RUN_DIR with the highest loss (a grid: image, predicted, actual, loss, probability)
    and the class pairs its model confuses most, as fastai's plot_top_losses and most_confused."""
    from transferkit.inspection import inspect_run

    found = inspect_run(run_dir, top=top, out=out)
    click.echo(f"highest losses of {found['test_images']} test images:")
    for row in found["top_losses"]:
        click.echo(f"  loss {row['loss']:.3f}  {row['file']}: predicted {row['predicted']} {row['p_predicted']:.3f}, "
                   f"actual {row['actual']} {row['p_actual']:.3f}")
    pairs = found["confused"]
    click.echo("most confused (actual -> predicted):" if pairs else "no test image misclassified")
    for pair in pairs[:10]:
        click.echo(f"  {pair['actual']} -> {pair['predicted']}: {pair['count']}")
    for path in found["files"]:
        click.echo(f"wrote {path}")


@main.group()
def visualize():
    """Look inside a trained model: intermediate activations and filter patterns."""


@visualize.command("activations")
@click.argument("run_dir", type=click.Path(exists=True))
@click.argument("image", type=click.Path())
@click.option("--layers", help="Comma-separated conv layer names (default: all).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the PNGs (default: RUN_DIR/explain/).")
@_friendly
def visualize_activations(run_dir, image, layers, out):
    """Grids of the feature maps IMAGE produces, one PNG per conv layer."""
    from transferkit.explain import save_activations

    for path in save_activations(run_dir, image, layers.split(",") if layers else None, out_dir=out):
        click.echo(f"wrote {path}")


@visualize.command("filters")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--layer", required=True, help="A conv layer name, e.g. block1_conv1.")
@click.option("--filters", default=16, show_default=True, help="How many filters to show.")
@click.option("--steps", default=30, show_default=True, help="Gradient-ascent steps.")
@click.option("--out", type=click.Path(dir_okay=False), help="The PNG to write (default: RUN_DIR/explain/).")
@_friendly
def visualize_filters(run_dir, layer, filters, steps, out):
    """The input patterns that excite each filter of LAYER most, found by gradient ascent."""
    from transferkit.explain import save_filter_patterns

    click.echo(f"wrote {save_filter_patterns(run_dir, layer, out=out, filters=filters, steps=steps)}")


@main.command("lr-find")
@click.argument("recipe")
@click.option("--strategy", help=f"One of {_strategies()} (default: the recipe's).")
@click.option("--stage", help="The stage whose rate to search (default: the strategy's last, the one --lr sets); "
                              "the stages before it train first.")
@click.option("--data", "data_path", help="A folder of images, one subfolder per class, instead of the recipe's data.")
@click.option("--lr", "sweep", type=_Sweep(), default="1e-7,10", show_default=True,
              help="The learning rates swept, lowest and highest.")
@click.option("--out", default="runs", show_default=True, help="Folder for the plot and its JSON.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key.")
@_friendly
def lr_find_command(recipe, strategy, stage, data_path, sweep, out, overrides):
    """The learning-rate range test of RECIPE (a recipe or a folder of images), as fastai's lr_find: rates rising
    from 1e-7 to 10 (--lr) over about 100 batches, a plot of the smoothed loss, and a suggested rate."""
    from transferkit.finder import lr_find

    finding = lr_find(recipe, strategy=strategy, stage=stage, data=data_path, out=out, overrides=overrides,
                      rates=sweep)
    click.echo(f"stage '{finding.stage}': tried {len(finding.rates)} rates from {finding.rates[0]:.1e} to "
               f"{finding.rates[-1]:.1e}")
    click.echo(f"  suggested learning rate  {finding.suggestion:.2e}   (fastai's valley)")
    click.echo(f"  plot  {finding.plot}")
    click.echo(f"  use it: transferkit run {recipe} --lr {finding.suggestion:.2g}"
               f"{' --strategy ' + strategy if strategy else ''}, or --lr auto")


@main.command("compare")
@click.argument("recipe")
@click.option("--strategies", help="Comma-separated strategies (default: scratch and the three transfer ones).")
@click.option("--backbones", help="Comma-separated backbones for the transfer strategies (default: the recipe's).")
@click.option("--data", "data_path", help="A folder of images, one subfolder per class, instead of the recipe's data.")
@click.option("--baselines", help="Comma-separated baselines for scratch (default: the recipe's).")
@click.option("--lr", type=RATE, help="Learning rate of each strategy's (last) stage, or auto.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per batch (--set batch_size=N).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run each variant with this many seeds (the recipe's and the next ones); report mean and sd.")
@click.option("--out", default="runs", show_default=True, help="Parent folder of the runs and the report.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key.")
@click.option("--quiet", is_flag=True, help="Print only the table and what it says.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
@_friendly
def compare_command(recipe, strategies, backbones, data_path, baselines, lr, batch_size, seeds, out, overrides,
                    quiet, as_json):
    """Run the strategies and baselines of RECIPE on identical splits; print a table and write a report.

    Each test accuracy comes with its 95% interval (Wilson) and the exact McNemar p-value of the best run
    against it on the same test images; the best is starred only when it beats every other run (p < 0.05).
    Runs that completed before with the same recipe and data are reused, not trained again.
    """
    import json

    from transferkit.comparison import COLUMNS, compare

    def split(text):
        return None if text is None else [part.strip() for part in text.split(",") if part.strip()]

    def progress(i, total, label, row, reused):
        if quiet or as_json:
            return
        if row is None:
            click.echo(f"[{i}/{total}] {label} ...", err=True)
        else:
            click.echo(f"[{i}/{total}] {label}: test accuracy {row['test_accuracy']:.3f}"
                       f"{' (reused)' if reused else ''}", err=True)

    comparison = compare(recipe, strategies=split(strategies), backbones=split(backbones),
                         baselines=split(baselines), out=out, data=data_path, progress=progress, learning_rate=lr,
                         overrides=list(overrides) + ([f"batch_size={batch_size}"] if batch_size else []),
                         seeds=seeds)
    if as_json:
        keys = [key for key, _ in COLUMNS] + ["variant", "seed", "test_images", "discordant", "pairing", "run_dir",
                                               "reused"]
        click.echo(json.dumps([{k: row.get(k) for k in keys} for row in comparison.rows], indent=2))
        return
    click.echo(comparison.table())
    if not quiet:
        click.echo(f"\nreport: {comparison.report_dir / 'report.html'} and report.md")
