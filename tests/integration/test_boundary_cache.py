"""Fine-tuning on activations cached at the freeze boundary gives the model that training on images gives."""
import keras
import numpy as np

import transferkit
from transferkit.data.sources import from_arrays
from transferkit.features import cache_dir
from transferkit.strategies import Context
from transferkit.strategies.finetune import finetune

PINNED = ["image_size=32", "base_blocks=null", "head.pooling=flatten", "head.batchnorm=true",
          "finetune.unfreeze_blocks=1", "data.per_class=null"]  # whatever the shipped demo recipe says
SAME = PINNED + ["head.units=16", "batch_size=16", "head.dropout=0", "finetune.augment=false",
                 "finetune.head_epochs=2", "finetune.epochs=2", "finetune.learning_rate=1e-4"]


def _train(recipe, splits, **kwargs):
    keras.utils.set_random_seed(recipe.seed)
    return finetune(Context(recipe, splits, verbose=0), **kwargs)


def test_boundary_cache_matches_training_on_images(stripes):
    recipe = transferkit.load_recipe("demo_hed", SAME, strategy="finetune")
    splits = from_arrays(stripes, ["horizontal", "vertical"])
    cached = _train(recipe, splits)
    full = _train(recipe, splits, boundary_cache=False)
    assert cached.info["boundary_cache"] == "block4_pool" and full.info["boundary_cache"] is None
    assert cached.info["unfrozen_layers"] == full.info["unfrozen_layers"] == ["block5_conv1", "block5_conv2",
                                                                                "block5_conv3"]
    assert len(list(cache_dir().glob("*.npz"))) == 4  # boundary activations and base outputs, train and val
    names = [w.path for w in full.model.weights]
    assert [w.path for w in cached.model.weights] == names
    moved = 0
    for name, mine, theirs, start in zip(names, cached.model.get_weights(), full.model.get_weights(),
                                         _fresh_weights(recipe, splits)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-5, err_msg=name)
        moved += not np.array_equal(theirs, start)
    assert moved > 10  # head and block5 trained in both paths
    for a, b in zip(cached.history, full.history):
        assert a["stage"] == b["stage"] and a["epoch"] == b["epoch"]
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
    images = stripes["test"][0][:16].astype("float32")
    np.testing.assert_allclose(cached.model.predict(images, verbose=0), full.model.predict(images, verbose=0),
                               atol=1e-5)


def _fresh_weights(recipe, splits):
    from transferkit.strategies.common import frozen_classifier

    keras.utils.set_random_seed(recipe.seed)
    return frozen_classifier(Context(recipe, splits, verbose=0))[0].get_weights()


def test_a_run_on_cached_activations_saves_a_model_for_raw_images(tmp_path, stripes):
    overrides = PINNED + ["head.units=16", "batch_size=16", "finetune.augment=false", "finetune.head_epochs=6"]
    result = transferkit.run("demo_hed", strategy="finetune", data=stripes, class_names=["horizontal", "vertical"],
                             out=tmp_path / "runs", overrides=overrides, epochs=2, verbose=0)
    assert result.metrics["boundary_cache"] == "block4_pool" and result.metrics["test_accuracy"] >= 0.85
    reloaded = keras.models.load_model(result.run_dir / "model.keras", safe_mode=True)
    assert reloaded.input_shape == (None, 32, 32, 3)
    assert [row["stage"] for row in result.history] == ["head"] * 6 + ["finetune"] * 2
