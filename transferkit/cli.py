"""The ``transferkit`` command: parses arguments and calls the Python API, nothing more.

Mistakes and missing resources print one ``error:`` line and exit 2 (``--debug`` shows the traceback).
"""
import contextlib
import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up chatter ignores TF_CPP_MIN_LOG_LEVEL."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _start_tensorflow(debug):
    """Import TensorFlow and initialise its devices, quietly unless debugging."""
    with contextlib.nullcontext() if debug else _native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()


def _friendly(command):
    """Run ``command``; a TransferkitError (or a bad file) becomes one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, debug=False, **kwargs):
        _start_tensorflow(debug)
        from transferkit.errors import TransferkitError

        try:
            return command(*args, **kwargs)
        except (TransferkitError, OSError) as err:
            if debug:
                raise
            message = str(err) if isinstance(err, TransferkitError) else f"{err.strerror or err}: {err.filename}"
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(wrapper)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="transferkit")
def main():
    """transferkit: transfer learning for image classification, best practice built in."""


@main.command()
@click.argument("recipe")
@click.option("--strategy", help="feature_extraction, frozen_augment, finetune or scratch.")
@click.option("--backbone", help="A backbone name (transferkit list backbones).")
@click.option("--weights", help="imagenet, none, hed-bsds500 (VGG16, offline) or a weights file.")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs of the strategy's (last) stage.")
@click.option("--image-size", type=click.IntRange(min=1), help="Input height and width in pixels.")
@click.option("--data-dir", help="Folder of prepared tfds data (else TFDS_DATA_DIR or ~/tensorflow_datasets).")
@click.option("--data", "data_path", help="A folder of images, one subfolder per class, instead of the recipe's data.")
@click.option("--out", default="runs", show_default=True, help="Parent folder of run directories.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any recipe key, e.g. finetune.unfreeze_blocks=2.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
@_friendly
def run(recipe, strategy, backbone, weights, epochs, image_size, data_dir, data_path, out, overrides, quiet):
    """Train RECIPE (a shipped name such as demo or cats_dogs, or a YAML path) and write a run directory."""
    from transferkit.api import run as run_recipe

    result = run_recipe(recipe, strategy=strategy, backbone=backbone, weights=weights, epochs=epochs,
                        image_size=image_size, data=data_path, data_dir=data_dir, out=out, overrides=overrides,
                        verbose=0 if quiet else 2)
    m = result.metrics
    model = m["baseline"] if m["strategy"] == "scratch" else f"{m['backbone']} ({m['weights']})"
    click.echo(f"\n{m['recipe']} / {m['strategy']} / {model}")
    click.echo(f"  test accuracy  {m['test_accuracy']:.4f}   (loss {m['test_loss']:.4f})")
    if m["best_val_accuracy"] is not None:
        click.echo(f"  best val acc   {m['best_val_accuracy']:.4f}")
    click.echo(f"  parameters     {m['trainable_params']:,} trainable of {m['total_params']:,}")
    click.echo(f"  wall time      {m['wall_time_s']:.1f} s")
    click.echo(f"  run directory  {result.run_dir}")
    for name in sorted(p.name for p in result.run_dir.iterdir()):
        click.echo(f"    {name}")


@main.command("list")
@click.argument("what", type=click.Choice(["backbones", "baselines", "strategies", "recipes", "weights"]))
@_friendly
def list_(what):
    """List what transferkit knows: backbones, baselines, strategies, recipes or weights sources."""
    from transferkit.catalog import catalog

    for name, description in catalog(what):
        click.echo(f"{name:20s} {description}")
