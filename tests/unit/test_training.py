"""The stage runner's parts: schedules, soft-label loss, MixUp/CutMix, per-layer rates, early stopping, EMA, lr-find."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from transferkit.data.mixing import mix_batch
from transferkit.data.pipeline import EpochData
from transferkit.data.sources import from_arrays
from transferkit.recipes import Stage, load_recipe
from transferkit.strategies import Context
from transferkit.training.callbacks import NonFiniteLoss
from transferkit.training.losses import Accuracy, Crossentropy
from transferkit.training.lr_find import find_rate, valley
from transferkit.training.optimizer import adam
from transferkit.training.schedules import OneCycle, WarmupCosine
from transferkit.training.stage import train_stage


def test_one_cycle_follows_fastai_step_by_step():
    rate, total = 1e-2, 40
    schedule = OneCycle(rate, total)
    warm = 10  # 25% of 40
    for step in range(total):
        if step < warm:
            pct, start, end = step / warm, rate / 25, rate
        else:
            pct, start, end = (step - warm) / (total - warm), rate, rate / 1e5
        expected = end + (start - end) / 2 * (1 + math.cos(math.pi * pct))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-4, abs=1e-9), step
    assert float(schedule(0)) == pytest.approx(rate / 25, rel=1e-5) and float(schedule(warm)) == pytest.approx(rate, rel=1e-5)


def test_cosine_warms_up_linearly_then_decays_to_zero():
    rate, total, warm = 1e-3, 50, 5
    schedule = WarmupCosine(rate, total, warm)
    for step in range(total + 1):
        if step < warm:
            expected = rate * (step + 1) / warm
        else:
            expected = rate / 2 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-4, abs=1e-9), step
    assert float(schedule(total)) == pytest.approx(0.0, abs=1e-12)


def test_crossentropy_takes_integer_and_soft_labels_and_smooths():
    predicted = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    sparse, onehot = np.array([0, 2]), np.eye(3, dtype="float32")[[0, 2]]
    expected = -np.mean(np.log([0.7, 0.8]))
    assert float(Crossentropy()(sparse, predicted)) == pytest.approx(expected, rel=1e-5)
    assert float(Crossentropy()(onehot, predicted)) == pytest.approx(expected, rel=1e-5)
    smoothed = onehot * 0.9 + 0.1 / 3
    assert float(Crossentropy(0.1)(sparse, predicted)) == pytest.approx(
        -np.mean(np.sum(smoothed * np.log(predicted), axis=1)), rel=1e-5)
    metric = Accuracy()
    metric.update_state(np.array([[0.6, 0.4, 0.0], [0.5, 0.0, 0.5]]), predicted)  # soft: argmax 0, then a tie -> 0
    assert float(metric.result()) == pytest.approx(0.5)


@pytest.mark.parametrize("shape,mixup,cutmix", [((16, 8, 8, 3), 0.4, 0.0), ((16, 8, 8, 3), 0.0, 1.0),
                                                ((16, 8, 8, 3), 0.4, 1.0), ((16, 32), 0.4, 0.0)])
def test_mixed_labels_sum_to_one_and_follow_the_mixed_inputs(shape, mixup, cutmix):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    y = tf.constant(np.arange(16) % 4)
    seed = tf.constant([3, 7], tf.int64)
    mixed_x, soft = mix_batch(x, y, 4, seed, mixup, cutmix)
    again_x, again = mix_batch(x, y, 4, seed, mixup, cutmix)
    np.testing.assert_array_equal(mixed_x, again_x)  # a stateless function of the seed
    np.testing.assert_array_equal(soft, again)
    np.testing.assert_allclose(np.sum(soft, axis=1), 1.0, rtol=1e-6)
    assert np.any(np.asarray(soft).max(axis=1) < 1)  # something was mixed
    assert not np.allclose(mixed_x, x)
    other = mix_batch(x, y, 4, tf.constant([4, 7], tf.int64), mixup, cutmix)[1]
    assert not np.allclose(other, soft)


def _stripes_model():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="low"),
                             keras.layers.Dense(2, activation="softmax", name="top")])


def test_each_layer_moves_by_its_rate_multiplier():
    keras.utils.set_random_seed(0)
    model = _stripes_model()
    rate = 1e-3
    low = {w.path: 0.1 for w in model.get_layer("low").weights}
    model.compile(optimizer=adam(rate, low), loss="sparse_categorical_crossentropy")
    before = {w.path: np.array(w) for w in model.trainable_weights}
    x, y = np.random.default_rng(0).normal(size=(32, 8)).astype("float32"), np.arange(32) % 2
    model.train_on_batch(x, y)
    moved = {w.path: np.abs(np.array(w) - before[w.path]).max() for w in model.trainable_weights}
    # Adam's first step moves every weight with a gradient by about the rate
    top, low = model.get_layer("top").kernel.path, model.get_layer("low").kernel.path
    assert moved[top] == pytest.approx(rate, rel=0.05)
    assert moved[low] == pytest.approx(0.1 * rate, rel=0.05)


def test_block_rates_fall_geometrically_from_the_top_block():
    from transferkit.backbones import BackboneSpec, block_rates

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="b1_conv")(inputs)
    x = keras.layers.MaxPooling2D(name="b1_pool")(x)
    x = keras.layers.Conv2D(2, 3, name="b2_conv")(x)
    x = keras.layers.Conv2D(2, 1, name="b2_out")(x)
    base = keras.Model(inputs, x)
    spec = BackboneSpec("tiny", None, "none", 8, 8, ("b1_pool", "b2_out"), "")
    rates = block_rates(base, spec, 2, 0.5)
    assert rates == {"b2_conv/kernel": 0.5, "b2_conv/bias": 0.5, "b2_out/kernel": 0.5, "b2_out/bias": 0.5,
                     "b1_conv/kernel": 0.25, "b1_conv/bias": 0.25}
    assert set(block_rates(base, spec, 1, 0.5)) == {"b2_conv/kernel", "b2_conv/bias", "b2_out/kernel", "b2_out/bias"}
    assert block_rates(base, spec, 2, 1.0) == {}


def _noisy_problem(n=64, seed=0):
    """Two classes a linear model separates, with a quarter of the training labels flipped (so it overfits)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    noisy = y.copy()
    noisy[: n // 4] = 1 - noisy[: n // 4]
    return x, y, noisy


def _fit_noisy(model, stage, n_train, flipped):
    """Train ``model`` for ``stage`` on the noisy problem (labels flipped or not); ``(record, rows, kept scores)``."""
    x, y, noisy = _noisy_problem(n_train)
    vx, vy, _ = _noisy_problem(200, seed=1)
    ctx = _context()
    rows = train_stage(ctx, model, stage, (x, noisy if flipped else y), (vx, vy), batch_size=16)
    return ctx.stage_log[-1], rows, model.evaluate(vx, vy, verbose=0, return_dict=True)


def _context():
    """A context for stages trained on arrays given to ``train_stage`` (its splits are never read)."""
    images, labels = np.zeros((8, 4, 4, 3), np.uint8), np.arange(8) % 2
    splits = from_arrays({"train": (images, labels), "val": (images, labels), "test": (images, labels)})
    return Context(load_recipe("demo_hed"), splits, verbose=0)


def _big_model():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(256, activation="relu"),
                             keras.layers.Dense(256, activation="relu"), keras.layers.Dense(2, activation="softmax")])


def test_early_stopping_keeps_the_epoch_with_the_best_validation_score():
    keras.utils.set_random_seed(0)
    record, rows, kept = _fit_noisy(_big_model(), Stage("scratch", 60, 3e-3, patience=8, monitor="val_loss"), 48,
                                    flipped=True)
    losses = [row["val_loss"] for row in rows]
    assert record["stopped_early"] and len(rows) < 60  # memorising the flipped labels made validation worse
    assert record["kept_epoch"] == rows[int(np.argmin(losses))]["epoch"] < rows[-1]["epoch"]
    assert kept["loss"] == pytest.approx(min(losses), rel=1e-4)
    assert kept["loss"] < losses[-1]


@pytest.mark.parametrize("epochs, stopped_early", [(3, False), (6, True)])
def test_patience_running_out_at_the_last_epoch_is_no_early_stop(epochs, stopped_early):
    # rate 0: no epoch after the first improves on it, so a patience of 2 runs out at epoch 3
    keras.utils.set_random_seed(0)
    record, rows, _ = _fit_noisy(_big_model(), Stage("scratch", epochs, 0.0, patience=2), 48, flipped=False)
    assert record["epochs_run"] == len(rows) == 3 and record["kept_epoch"] == 1
    assert record["stopped_early"] is stopped_early


@pytest.mark.parametrize("carry", [True, False])
def test_a_stage_that_never_beats_the_stage_before_keeps_its_weights(carry):
    keras.utils.set_random_seed(0)
    x, y, _ = _noisy_problem(64)
    vx, vy, _ = _noisy_problem(200, seed=1)
    ctx, model = _context(), _big_model()
    train_stage(ctx, model, Stage("head", 8, 3e-3), (x, y), (vx, vy), batch_size=16)
    head = ctx.stage_log[-1]
    # the second stage learns the opposite labels: every one of its epochs validates worse than the head's best
    rows = train_stage(ctx, model, Stage("finetune", 3, 3e-2), (x, 1 - y), (vx, vy), start_epoch=8,
                       batch_size=16, carry_best=carry)
    record, kept = ctx.stage_log[-1], model.evaluate(vx, vy, verbose=0, return_dict=True)["accuracy"]
    assert max(row["val_accuracy"] for row in rows) < head["best"]
    if carry:
        assert record["kept_from"] == "head" and record["kept_epoch"] == head["kept_epoch"] <= 8
        assert kept == pytest.approx(head["best"])
    else:
        assert "kept_from" not in record and record["kept_epoch"] > 8
        assert kept == pytest.approx(record["best"]) and kept < head["best"]


def test_a_nan_loss_stops_the_stage_with_the_last_good_weights():
    keras.utils.set_random_seed(0)
    x, y, _ = _noisy_problem(64)
    x[20] = np.nan  # the third batch of the first epoch; no ReLU, which would drop it and leave the loss finite
    ctx, model = _context(), keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    before = model.get_weights()
    with pytest.raises(NonFiniteLoss, match="the loss became nan at epoch 1, batch 3 of stage 'head'"):
        train_stage(ctx, model, Stage("head", 3, 1e-2), (x, y), None, batch_size=8, shuffle=False)
    for kept, start in zip(model.get_weights(), before):
        np.testing.assert_array_equal(kept, start)


def test_ema_weights_are_what_validation_measured_and_what_the_stage_keeps():
    keras.utils.set_random_seed(0)
    stage = Stage("head", 5, 1e-2, patience=None, restore_best=False, ema=0.9)
    _, rows, kept = _fit_noisy(_stripes_model(), stage, 64, flipped=False)
    assert kept["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-5)


def test_lr_find_suggests_a_rate_that_trains_and_puts_the_weights_back():
    x, y, _ = _noisy_problem(512)
    keras.utils.set_random_seed(0)
    model = _stripes_model()
    before = model.get_weights()

    def make(epoch):
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512, seed=epoch).batch(32)

    from transferkit.training.losses import loss_and_metric

    finding = find_rate(model, EpochData(make, 16), *loss_and_metric())
    for mine, theirs in zip(model.get_weights(), before):
        np.testing.assert_array_equal(mine, theirs)
    assert 1e-4 < finding.suggestion < 1.0
    assert finding.losses[-1] > 2 * min(finding.losses) or finding.rates[-1] > 1  # it swept up to the blow-up
    model.compile(optimizer=adam(finding.suggestion), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_valley_picks_the_longest_fall():
    rates = list(np.logspace(-6, 0, 13))
    losses = [3, 3, 2.9, 2.5, 2.0, 1.4, 1.0, 0.8, 0.7, 0.9, 2.0, 5.0, 9.0]
    assert rates[3] <= valley(rates, losses) <= rates[7]


def _frozen_base_model():
    base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()],
                            name="base")
    base.trainable = False
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(optimizer=adam(1e-2), loss="sparse_categorical_crossentropy")
    return model, base


def test_a_checkpoint_holds_what_training_changes_and_restores_it_with_the_optimizer(tmp_path):
    from transferkit.training.state import changing, load_state, save_state

    model, base = _frozen_base_model()
    frozen = {id(w) for w in base.weights}
    kept = [model.weights[i] for i in changing(model)]
    # the head's kernel, bias and BatchNorm statistics; none of the frozen base's weights (its BatchNorm's too)
    assert kept and not any(id(w) in frozen for w in kept)
    assert len(kept) == len(model.weights) - len(base.weights)
    x, y = np.random.default_rng(0).normal(size=(16, 8, 8, 3)), np.arange(16) % 2
    model.fit(x, y, epochs=2, verbose=0)
    save_state(tmp_path / "state.npz", model)
    saved_weights, saved_optimizer = model.get_weights(), [v.numpy() for v in model.optimizer.variables]
    model.fit(x, y, epochs=1, verbose=0)  # moves the head, its BatchNorm statistics and Adam's moments
    load_state(tmp_path / "state.npz", model)
    for now, then in zip(model.get_weights(), saved_weights):
        np.testing.assert_array_equal(now, then)
    for variable, then in zip(model.optimizer.variables, saved_optimizer):
        np.testing.assert_array_equal(variable.numpy(), then)
    rebuilt, _ = _frozen_base_model()
    with pytest.raises(OSError, match="another model"):
        load_state(tmp_path / "state.npz", keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(OSError, match="damaged"):
        load_state(tmp_path / "broken.npz", rebuilt)


@pytest.mark.parametrize("tie, kept_epoch, stopped", [("val_loss", 4, False), (None, 2, True)])
def test_equal_validation_accuracies_are_ranked_by_validation_loss(tie, kept_epoch, stopped):
    from transferkit.training.callbacks import BestEpoch

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    best = BestEpoch("val_accuracy", patience=2, tie=tie)
    best.set_model(model)
    model.stop_training = False
    best.on_train_begin()
    logs = [(0.5, 1.0), (0.8, 0.6), (0.8, 0.5), (0.8, 0.45), (0.7, 0.3)]  # a plateau of accuracy, loss falling
    for epoch, (accuracy, loss) in enumerate(logs):
        if model.stop_training:
            break
        model.layers[0].kernel.assign([[float(epoch + 1)]])  # the weights say which epoch they are from
        best.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
    best.on_train_end()
    assert best.kept_epoch == kept_epoch and bool(best.stopped_epoch) == stopped
    assert float(model.layers[0].kernel.numpy()[0, 0]) == kept_epoch
    assert best.best_tie == (logs[kept_epoch - 1][1] if tie else None)
