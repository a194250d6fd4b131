import time

import h5py
import numpy as np
import pytest

from transferkit.errors import TransferkitError
from transferkit.weights import build_base, hed_weights_path, weights_id


def test_hed_weights_load_into_vgg16_layer_by_layer():
    base = build_base("vgg16", "hed-bsds500", 32)
    with h5py.File(hed_weights_path(), "r") as h5:
        for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
            for i, name in enumerate(("conv2d", "conv2d_1", "conv2d_2")[:convs], start=1):
                kernel, bias = base.get_layer(f"block{block}_conv{i}").get_weights()
                np.testing.assert_array_equal(kernel, h5[f"block{block}/layers/{name}/vars/0"][()])
                np.testing.assert_array_equal(bias, h5[f"block{block}/layers/{name}/vars/1"][()])


def test_hed_weights_give_different_features_from_random_weights():
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    hed = build_base("vgg16", "hed-bsds500", 32).predict(images, verbose=0)
    rand = build_base("vgg16", "none", 32).predict(images, verbose=0)
    assert not np.allclose(hed, rand)


def test_hed_weights_exist_only_for_vgg16():
    with pytest.raises(TransferkitError, match="only for vgg16"):
        build_base("resnet50", "hed-bsds500", 32)


def test_imagenet_offline_fails_fast_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    started = time.time()
    with pytest.raises(TransferkitError) as err:
        build_base("vgg16", "imagenet", 32)
    assert time.time() - started < 30
    message = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message and "--weights" in message
    assert "\n" not in message


def test_imagenet_weights_come_from_the_keras_cache_offline(tmp_path, monkeypatch):
    """A weights file in the Keras cache is used as keras.applications would use the downloaded one."""
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    source = build_base("vgg16", "none", 32)
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as h5:
        legacy_h5_format.save_weights_to_hdf5_group(h5, source)
    loaded = build_base("vgg16", "imagenet", 32)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_from_a_local_file_and_a_mismatched_file(tmp_path):
    source = build_base("vgg16", "hed-bsds500", 32)
    path = tmp_path / "mine.weights.h5"
    source.save_weights(path)
    loaded = build_base("vgg16", str(path), 32)
    np.testing.assert_array_equal(loaded.get_layer("block3_conv2").get_weights()[0],
                                  source.get_layer("block3_conv2").get_weights()[0])
    assert weights_id(str(path)).startswith("mine.weights.h5:")
    with pytest.raises(TransferkitError, match=r"conv1_conv/kernel has shape \(7, 7, 3, 64\) but the file gives"):
        build_base("resnet50", str(path), 32)
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not HDF5")
    with pytest.raises(TransferkitError, match="cannot load weights from .*junk"):
        build_base("vgg16", str(junk), 32)


def test_unknown_weights_source_suggests_the_closest():
    with pytest.raises(TransferkitError, match="did you mean 'imagenet'"):
        build_base("vgg16", "imagenett", 32)
