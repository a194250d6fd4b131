import keras
import numpy as np
import pytest

from transferkit.backbones import BACKBONES, unfreeze_top_blocks
from transferkit.errors import TransferkitError
from transferkit.explain import conv_layers, grad_cam
from transferkit.heads import build_classifier, build_head
from transferkit.layers import Preprocess
from transferkit.recipes import load_recipe
from transferkit.weights import build_base


def test_the_three_required_backbones_are_registered():
    assert {"vgg16", "resnet50", "inception_v3"} <= set(BACKBONES)
    assert BACKBONES["vgg16"].preprocess == BACKBONES["resnet50"].preprocess == "caffe"
    assert BACKBONES["inception_v3"].preprocess == "tf"
    assert BACKBONES["inception_v3"].min_size == 75 and BACKBONES["vgg16"].min_size == 32


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_at_its_min_size_and_declares_real_blocks(name):
    spec = BACKBONES[name]
    base = build_base(name, "none", spec.min_size)
    layer_names = [layer.name for layer in base.layers]
    positions = [layer_names.index(end) for end in spec.block_ends]
    assert positions == sorted(positions), "blocks must be listed bottom to top"
    for end in spec.block_ends[:-1]:  # a cut: the layers above run on its output alone (the fine-tuning cache)
        keras.Model(base.get_layer(end).output, base.output)
    out = base.predict(np.zeros((1, spec.min_size, spec.min_size, 3), "float32"), verbose=0)
    assert out.ndim == 4 and out.shape[0] == 1


@pytest.mark.parametrize("name", ["vgg16", "inception_v3"])
def test_image_size_below_minimum_is_refused(name):
    spec = BACKBONES[name]
    with pytest.raises(TransferkitError, match=f"minimum of {spec.min_size}"):
        build_base(name, "none", spec.min_size - 1)


def test_unfreeze_top_block_of_vgg16_opens_only_block5():
    base = build_base("vgg16", "none", 32)
    opened = unfreeze_top_blocks(base, BACKBONES["vgg16"], 1)
    assert opened == ["block5_conv1", "block5_conv2", "block5_conv3"]
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == set(opened)
    opened_two = unfreeze_top_blocks(base, BACKBONES["vgg16"], 2)
    assert opened_two[0] == "block4_conv1" and len(opened_two) == 6
    assert unfreeze_top_blocks(base, BACKBONES["vgg16"], 0) == []
    assert len(unfreeze_top_blocks(base, BACKBONES["vgg16"], 5)) == 13
    with pytest.raises(TransferkitError, match="between 0 and 5"):
        unfreeze_top_blocks(base, BACKBONES["vgg16"], 6)


def test_unfreeze_top_block_of_resnet50_is_stage_conv5():
    base = build_base("resnet50", "none", 32)
    opened = unfreeze_top_blocks(base, BACKBONES["resnet50"], 1)
    assert opened and all(name.startswith("conv5_") for name in opened)


def test_resnet152_stages_repeat_3_8_36_and_3_blocks_and_the_top_one_is_conv5():
    spec = BACKBONES["resnet152"]
    base = build_base("resnet152", "none", spec.min_size)
    names = [layer.name for layer in base.layers]
    blocks = [len({name.split("_")[1] for name in names if name.startswith(f"conv{stage}_block")})
              for stage in range(2, 6)]
    assert blocks == [3, 8, 36, 3]
    opened = unfreeze_top_blocks(base, spec, 1)
    assert opened[0] == "conv5_block1_1_conv" and all(name.startswith("conv5_") for name in opened)


def test_xception_blocks_end_on_residual_adds_named_the_same_in_every_build():
    spec = BACKBONES["xception"]
    first, base = (build_base("xception", "none", spec.min_size) for _ in range(2))
    adds = [[layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)] for model in (first, base)]
    assert adds[0] == adds[1] == [f"block{block}_add" for block in range(2, 14)]
    opened = unfreeze_top_blocks(base, spec, 1)
    assert (opened[0], opened[-1]) == ("block13_sepconv1", "block14_sepconv2")
    assert [type(base.get_layer(name)) for name in opened].count(keras.layers.Conv2D) == 1  # the residual 1x1 conv
    assert build_base("xception", "none", spec.min_size, blocks=3).output_shape == (None, 5, 5, 728)  # entry flow
    head = build_head(base.output_shape[1:], 2, load_recipe("demo").head)
    model = build_classifier(base, spec.preprocess, head, spec.min_size)
    assert conv_layers(model)[-1] == "block14_sepconv2"  # its separable convs count as conv layers
    heatmap, _ = grad_cam(model, np.full((spec.min_size, spec.min_size, 3), 100, np.float32))
    assert heatmap.shape == (3, 3)


def test_inception_resnet_v2_top_block_is_the_ten_c_blocks_and_conv_7b():
    spec = BACKBONES["inception_resnet_v2"]
    base = build_base("inception_resnet_v2", "none", spec.min_size)
    opened = unfreeze_top_blocks(base, spec, 1)
    assert {f"block8_{i}_conv" for i in range(1, 11)} <= set(opened) and opened[-1] == "conv_7b"
    assert not [name for name in opened if name.startswith(("block17", "block35"))]


@pytest.mark.parametrize("mode, reference", [
    ("caffe", keras.applications.vgg16.preprocess_input),
    ("tf", keras.applications.inception_v3.preprocess_input),
    ("torch", keras.applications.densenet.preprocess_input),
])
def test_preprocess_layer_matches_keras_applications(mode, reference):
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = reference(images.copy())
    np.testing.assert_allclose(np.asarray(Preprocess(mode)(images)), expected, rtol=1e-5, atol=1e-4)


def test_preprocess_layer_round_trips_through_config():
    layer = Preprocess("tf")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert clone.mode == "tf"


def test_base_blocks_cuts_the_base_and_unfreezing_counts_from_the_cut():
    base = build_base("vgg16", "none", 32, blocks=3)
    assert base.output_shape == (None, 4, 4, 256) and base.layers[-1].name == "block3_pool"
    assert unfreeze_top_blocks(base, BACKBONES["vgg16"], 1) == ["block3_conv1", "block3_conv2", "block3_conv3"]
    with pytest.raises(TransferkitError, match="between 0 and 3"):
        unfreeze_top_blocks(base, BACKBONES["vgg16"], 4)
    with pytest.raises(TransferkitError, match="between 1 and 5"):
        build_base("vgg16", "none", 32, blocks=6)
