"""Faults a real run meets: kill -9, Ctrl-C, a loss that blows up. Nothing done before them is lost."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import transferkit
import transferkit.layers  # noqa: F401  (registers the layers saved models use)
from conftest import cli, stripe_images
from transferkit.data.sources import from_arrays
from transferkit.strategies import Context
from transferkit.training.callbacks import interruptible
from transferkit.training.stage import train_stage

TINY = ["--set", "head.units=16", "--set", "batch_size=16", "--set", "finetune.augment=false", "--set", "image_size=32",
        "--quiet"]


def _start(tmp_path, photos, *args):
    cmd = [sys.executable, "-m", "transferkit", "run", "demo_hed", "--data", str(photos), "--out", str(tmp_path), *TINY,
           *args]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epoch(tmp_path, process, epoch, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for state_file in tmp_path.glob("photos*-*/run.json"):
            try:
                state = json.loads(state_file.read_text())
            except ValueError:
                continue
            if state.get("epoch", 0) >= epoch:
                return state_file.parent, state
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the run never reached epoch %d" % epoch)


def _resume(tmp_path, run_dir):
    return cli("run", "--resume", run_dir, "--quiet", cwd=tmp_path)


def _runs(out):
    listed = cli("runs", "--out", out, "--json", cwd=out)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def _epochs(run_dir):
    return [(int(r["epoch"]), r["stage"]) for r in csv.DictReader((run_dir / "history.csv").open())]


EXACT = ["--set", "deterministic=true", "--mixed-precision", "none"]  # float32, op determinism: repeatable bits
FINETUNE = ["--strategy", "finetune", "--set", "finetune.head_epochs=3", "--epochs", "8", *EXACT]


def _straight_through(root, photos, *args):
    """The run killed in a test, run once without interruption."""
    root.mkdir()
    done = _start(root, photos, *args)
    assert done.wait(timeout=600) == 0, done.communicate()
    return next(root.glob("photos*-*"))


def _assert_same_training(run_dir, reference):
    ours, theirs = (list(csv.DictReader((d / "history.csv").open())) for d in (run_dir, reference))
    assert [r["epoch"] for r in ours] == [r["epoch"] for r in theirs]
    for mine, straight in zip(ours, theirs):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(mine[key]) == pytest.approx(float(straight[key]), rel=1e-4, abs=1e-6), (mine["epoch"], key)
    weights = [keras.models.load_model(d / "model.keras", safe_mode=True).get_weights() for d in (run_dir, reference)]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def finetune_reference(tmp_path_factory, photos):
    return _straight_through(tmp_path_factory.mktemp("reference") / "finetune", photos, *FINETUNE)


def test_kill_9_in_each_stage_then_resume_trains_as_if_never_killed(tmp_path, photos, finetune_reference):
    process = _start(tmp_path, photos, *FINETUNE)
    run_dir, _ = _wait_for_epoch(tmp_path, process, 2)  # in the head stage
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # it never knew
    assert not (run_dir / "metrics.json").exists()
    resumed = subprocess.Popen([sys.executable, "-m", "transferkit", "run", "--resume", str(run_dir), "--quiet"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_epoch(tmp_path, resumed, 5)  # then again, in the fine-tuning stage
    resumed.send_signal(signal.SIGKILL)
    resumed.wait()
    done = _resume(tmp_path, run_dir)
    assert done.returncode == 0, done.stderr
    # early stopping (on by default) may end the fine-tuning before its 8 epochs: where it ends must not move
    epochs = _epochs(run_dir)
    assert epochs == _epochs(finetune_reference) and epochs[:4] == [(1, "head"), (2, "head"), (3, "head"), (4, "finetune")]
    final = json.loads((run_dir / "run.json").read_text())
    assert final["status"] == "completed" and not (run_dir / "backup").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reference = json.loads((finetune_reference / "metrics.json").read_text())
    assert metrics["epochs"] == len(epochs) and metrics["test_accuracy"] >= 0.8
    assert metrics["stages"] == reference["stages"]  # the same epochs kept, stopped at the same epoch
    assert "--resume" not in done.stderr
    _assert_same_training(run_dir, finetune_reference)  # the same epochs' batches, dropout and weights


def test_kill_9_during_augmented_training_then_resume_trains_as_if_never_killed(tmp_path, photos):
    # augmentation draws from the seed and the epoch's index, so a resumed epoch 3 sees epoch 3's images
    args = ["--strategy", "frozen_augment", "--epochs", "5", "--set", "augment.rotation=20", *EXACT]
    reference = _straight_through(tmp_path / "reference", photos, *args)
    (tmp_path / "killed").mkdir()
    process = _start(tmp_path / "killed", photos, *args)
    run_dir, _ = _wait_for_epoch(tmp_path / "killed", process, 2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    listed = _runs(tmp_path / "killed")
    assert [(r["name"], r["status"], r["resume"]) for r in listed] == [
        (run_dir.name, "killed", f"transferkit run --resume {run_dir}")]
    done = _resume(tmp_path / "killed", run_dir)
    assert done.returncode == 0, done.stderr
    (row,) = _runs(tmp_path / "killed")
    assert row["status"] == "completed" and row["resume"] is None and row["strategy"] == "frozen_augment"
    assert row["test_accuracy"] == json.loads((run_dir / "metrics.json").read_text())["test_accuracy"]
    assert re.search(r"resuming \S+ \(frozen_augment\): stage 'head' done to epoch (\d) of 5; training goes on from "
                     r"epoch (\d)", done.stdout)
    _assert_same_training(run_dir, reference)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, photos):
    process = _start(tmp_path, photos, "--strategy", "feature_extraction", "--epochs", "400")
    run_dir, _ = _wait_for_epoch(tmp_path, process, 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"transferkit run --resume {run_dir}" in stderr and "Traceback" not in stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert (run_dir / "backup" / "head").is_dir()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt, on purpose
def test_an_interrupt_python_drops_still_stops_training(stripes):
    class Finalizer:  # Ctrl-C landing in a finalizer: Python prints "Exception ignored" and goes on
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    class Batches(keras.callbacks.Callback):
        count = 0

        def on_train_batch_end(self, batch, logs=None):
            self.count += 1

    images, labels = stripes["train"]
    model = keras.Sequential([keras.Input(images.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    counter = Batches()
    ctx = Context(transferkit.load_recipe("demo_hed"), from_arrays(stripes, ["h", "v"]), verbose=0, callbacks=[counter])
    with interruptible():
        Finalizer()
        with pytest.raises(KeyboardInterrupt):
            train_stage(ctx, model, ctx.recipe.scratch.stage("head", epochs=50), (images.astype("float32"), labels),
                        None, batch_size=8)
    assert counter.count == 1  # stopped at the first batch end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


class _PoisonAt(keras.callbacks.Callback):
    """Make the model's first kernel NaN as the second epoch's first batch begins (as a rate far too high
    does); records the weights the first epoch ended with. Whether the loss turns NaN too depends on the CPU's
    kernels (ReLU and max pooling drop NaN on some, pass it on others): either way the run must stop."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.after_first = self.model.get_weights()

    def on_train_batch_begin(self, batch, logs=None):
        if getattr(self, "after_first", None) is not None and batch == 0 and not getattr(self, "done", False):
            kernel = self.model.trainable_variables[0]
            kernel.assign(np.full(kernel.shape, np.nan, kernel.dtype))
            self.done = True


def test_a_loss_that_becomes_nan_stops_the_run_and_keeps_the_last_good_weights(tmp_path, photos):
    poison = _PoisonAt()
    with pytest.raises(transferkit.TransferkitError, match="the (weights|loss) became nan.* at epoch 2") as raised:
        transferkit.run("demo_hed", data=photos, out=tmp_path, strategy="scratch", epochs=5, verbose=0,
                        overrides=[o for o in TINY[:-1] if o != "--set"], callbacks=[poison])
    run_dir = next(tmp_path.glob("photos*-scratch-*"))
    assert str(run_dir / "model.keras") in str(raised.value)
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "failed" and " became nan" in state["reason"]
    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    for kept, good in zip(model.get_weights(), poison.after_first):  # the first epoch's, not the broken ones
        np.testing.assert_allclose(kept, good, rtol=1e-6)
    assert np.isfinite(model.predict(stripe_images(4)[0].astype("float32"), verbose=0)).all()
    # a failed run is not used by mistake: evaluate says what happened, in one line
    evaluated = cli("evaluate", run_dir, cwd=tmp_path)
    assert evaluated.returncode == 2 and "Traceback" not in evaluated.stderr, evaluated.stderr
    assert "status: failed" in evaluated.stderr


def test_resume_refuses_a_completed_run_and_a_non_run(tmp_path, finetune_reference):
    assert json.loads((finetune_reference / "run.json").read_text())["status"] == "completed"
    again = _resume(tmp_path, finetune_reference)
    assert again.returncode == 2 and "completed already" in again.stderr
    nothing = _resume(tmp_path, tmp_path)
    assert nothing.returncode == 2 and "not a transferkit run directory" in nothing.stderr


@pytest.mark.parametrize("command", [["export", "{run}", "--format", "keras"], ["evaluate", "{run}"],
                                     ["predict", "{run}", "x.png"], ["explain", "{run}", "x.png"]])
def test_an_unfinished_run_cannot_be_used_and_says_how_to_finish_it(tmp_path, command):
    run_dir = tmp_path / "demo_hed-finetune-20260101-000000"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text("name: demo\n")
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "epoch": 3}))
    Image.fromarray(stripe_images(1)[0][0]).save(tmp_path / "x.png")
    out = cli(*[part.format(run=run_dir) for part in command], cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"has not completed (status: running); finish it with: transferkit run --resume {run_dir}" in out.stderr
    assert "Traceback" not in out.stderr
