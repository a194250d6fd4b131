"""Pictures of what the network sees: Grad-CAM heatmaps, intermediate activations, filter patterns.

Works on any model transferkit trains: a pretrained base with a head (the heatmap comes from the base's
last conv layer) or a from-scratch baseline (its last conv layer).

Example:
    >>> model = transferkit.load("runs/demo-finetune-20261123-171500").model
    >>> heatmap, probabilities = grad_cam(model, image)   # heatmap: (h, w) in [0, 1]
"""
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from transferkit.errors import TransferkitError
from transferkit.runs import save_figure


def _is_feature_map(tensor):
    return len(tensor.shape) == 4


def _unit_layers(model):
    """The model's layers after its input, with the chains inside (a baseline, the head) opened up, and a
    functional baseline (GoogLeNet) split into its body and its Dense classifier."""
    units = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Sequential) or layer.name == "head":
            units.extend(sub for sub in layer.layers if not isinstance(sub, keras.layers.InputLayer))
        elif isinstance(layer, keras.Model) and isinstance(layer.layers[-1], keras.layers.Dense):
            classifier = layer.layers[-1]
            units += [keras.Model(layer.input, classifier.input, name=layer.name), classifier]
        else:
            units.append(layer)
    return units


def conv_layers(model):
    """Names of the Conv2D and SeparableConv2D layers of a model (inside its base or baseline), bottom to top.

    Example:
        >>> conv_layers(vgg16_model)[-1]
        'block5_conv3'
    """
    names = []
    for unit in _unit_layers(model):
        inner = unit.layers if isinstance(unit, keras.Model) else [unit]
        names += [layer.name for layer in inner
                  if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D))]
    return names


def feature_model(model, layer=None):
    """A model from raw images to ``[feature map of layer, class logits]``.

    ``layer`` names a conv layer (default: the last one), inside a nested base or not. The logits are the
    final softmax layer's inputs: gradients of a saturated softmax vanish, those of the logits do not.

    Example:
        >>> maps, logits = feature_model(model)(images)
    """
    names = conv_layers(model)
    if not names:
        raise TransferkitError("the model has no convolution layers to explain")
    layer = layer or names[-1]
    if layer not in names:
        raise TransferkitError(f"no conv layer '{layer}'; the model's conv layers are {', '.join(names)}")
    *units, last = _unit_layers(model)
    if not isinstance(last, keras.layers.Dense):
        raise TransferkitError("the model does not end in a Dense classifier layer")
    inputs = keras.Input(model.input.shape[1:])
    x, tapped = inputs, None
    for unit in units:
        if isinstance(unit, keras.Model) and any(sub.name == layer for sub in unit.layers):
            inner = keras.Model(unit.input, [unit.get_layer(layer).output, unit.output])
            tapped, x = inner(x)
        else:
            x = unit(x)
            tapped = x if unit.name == layer else tapped
    logits = keras.ops.matmul(x, last.kernel) + last.bias
    return keras.Model(inputs, [tapped, logits])


def grad_cam(model, image, class_index=None, layer=None):
    """Grad-CAM (Selvaraju et al. 2017): where in ``image`` the evidence for a class lies.

    ``image`` is one RGB image already at the model's input size (0-255). Returns ``(heatmap, probabilities)``:
    the heatmap at the conv layer's resolution, scaled to [0, 1]; the class defaults to the top prediction.

    Example:
        >>> heatmap, probabilities = grad_cam(model, image, class_index=3)
    """
    grad_model = feature_model(model, layer)
    batch = tf.convert_to_tensor(np.asarray(image, np.float32)[np.newaxis])
    with tf.GradientTape() as tape:
        maps, logits = grad_model(batch, training=False)
        index = int(tf.argmax(logits[0])) if class_index is None else class_index
        score = logits[:, index]
    grads = tape.gradient(score, maps)
    probabilities = tf.nn.softmax(logits)
    weights = tf.reduce_mean(grads, axis=(1, 2))  # one weight per channel: its mean gradient
    cam = tf.nn.relu(tf.reduce_sum(maps * weights[:, tf.newaxis, tf.newaxis, :], axis=-1))[0].numpy()
    top = cam.max()
    return (cam / top if top > 0 else cam), probabilities[0].numpy()


def overlay(image, heatmap, alpha=0.4):
    """The heatmap (jet colours) over the image, as RGB uint8 at the image's size."""
    import matplotlib

    resized = tf.image.resize(heatmap[..., np.newaxis], image.shape[:2]).numpy()[..., 0]
    colours = matplotlib.colormaps["jet"](np.clip(resized, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * np.asarray(image, np.float32) + alpha * colours, 0, 255).astype(np.uint8)


def activations(model, image, layers=None):
    """Feature maps of ``layers`` (default: every conv layer) for one image: ``{name: (h, w, channels)}``.

    Example:
        >>> maps = activations(model, image, ["block1_conv1"])
    """
    names = layers or conv_layers(model)
    batch = np.asarray(image, np.float32)[np.newaxis]
    return {name: np.asarray(feature_model(model, name)(batch)[0][0]) for name in names}


def filter_patterns(model, layer, filters=16, steps=30, step_size=10.0, seed=0):
    """Input patterns that maximise each of the first ``filters`` filters of ``layer``, by gradient ascent.

    Starts from grey noise at the model's input size; returns uint8 images (filters, H, W, 3).

    Example:
        >>> patterns = filter_patterns(model, "block1_conv1", filters=8)
    """
    maps_of = feature_model(model, layer)
    size = model.input.shape[1:3]
    rng = np.random.default_rng(seed)
    count = min(filters, int(maps_of.output[0].shape[-1]))
    images = tf.Variable(128.0 + rng.normal(0, 20, (count, *size, 3)).astype(np.float32))
    channels = tf.range(count)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            maps, _ = maps_of(images, training=False)
            # filter i's mean activation, away from the borders, on image i
            inner = maps[:, 2:-2, 2:-2, :] if maps.shape[1] > 4 else maps
            chosen = tf.gather(tf.reduce_mean(inner, axis=(1, 2)), channels, axis=1, batch_dims=1)
            loss = tf.reduce_sum(chosen)
        grads = tape.gradient(loss, images)
        grads /= tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True)) + 1e-8
        images.assign(tf.clip_by_value(images + step_size * grads, 0.0, 255.0))
    patterns = images.numpy()
    patterns -= patterns.mean(axis=(1, 2, 3), keepdims=True)
    patterns /= patterns.std(axis=(1, 2, 3), keepdims=True) + 1e-5
    return np.clip(patterns * 64 + 128, 0, 255).astype(np.uint8)


def _keras_predictor(path):
    from transferkit.predict import KerasPredictor, load

    predictor = load(path)
    if not isinstance(predictor, KerasPredictor):
        raise TransferkitError(f"{path} is a SavedModel export; explain a run directory or a Keras export")
    return predictor


def explain_image(path, image_path, class_name=None, out=None, layer=None):
    """Grad-CAM of one image for a run directory or Keras export, saved as a PNG with the top predictions.

    Returns the PNG's path (default: ``<image name>.gradcam.png`` beside the run's other files).

    Example:
        >>> explain_image("runs/demo-finetune-20261123-171500", "boot.png")
        PosixPath('runs/demo-finetune-20261123-171500/explain/boot.gradcam.png')
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transferkit.data.pipeline import resize
    from transferkit.predict import read_image

    predictor = _keras_predictor(path)
    if class_name is not None and class_name not in predictor.class_names:
        from transferkit.errors import did_you_mean

        raise TransferkitError(f"unknown class '{class_name}'{did_you_mean(class_name, predictor.class_names)}")
    image = resize(read_image(image_path), predictor.image_size, predictor.resize).numpy()
    index = None if class_name is None else predictor.class_names.index(class_name)
    heatmap, probabilities = grad_cam(predictor.model, image, index, layer)
    top = predictor.top_k(probabilities[np.newaxis], k=min(3, len(predictor.class_names)))[0]
    shown = predictor.class_names[int(np.argmax(probabilities)) if index is None else index]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
    axes[0].imshow(image.astype(np.uint8))
    axes[0].set_title("input")
    axes[1].imshow(overlay(image, heatmap))
    axes[1].set_title(f"Grad-CAM: {shown}")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(", ".join(f"{name} {p:.1%}" for name, p in top))
    out = Path(out) if out else Path(predictor.path) / "explain" / f"{Path(image_path).stem}.gradcam.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out)


def image_grid(tiles, titles, path, suptitle, cmap=None, cols=8, cell=1.6):
    r"""A PNG grid of images, each with its title (several lines are fine), at ``path``; ``cell`` is the width
    of each image in inches.

    Example:
        >>> image_grid([image_a, image_b], ["cat\nloss 2.3", "dog\nloss 1.9"], "grid.png", "top losses")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    lines = max([title.count("\n") + 1 for title in titles] or [1])
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell - 0.05 + 0.15 * lines) * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile, title in zip(axes.flat, tiles, titles):
        ax.imshow(tile, cmap=cmap)
        ax.set_title(title, fontsize=7)
    fig.suptitle(suptitle)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def save_activations(path, image_path, layers=None, out_dir=None, channels=16):
    """One PNG grid of feature maps per layer (the first ``channels`` channels); returns their paths.

    Example:
        >>> save_activations("runs/demo-finetune-20261123-171500", "boot.png", ["block1_conv1"])
    """
    from transferkit.data.pipeline import resize
    from transferkit.predict import read_image

    predictor = _keras_predictor(path)
    image = resize(read_image(image_path), predictor.image_size, predictor.resize).numpy()
    out_dir = Path(out_dir) if out_dir else Path(predictor.path) / "explain"
    written = []
    for name, maps in activations(predictor.model, image, layers).items():
        count = min(channels, maps.shape[-1])
        written.append(image_grid([maps[..., i] for i in range(count)], [f"#{i}" for i in range(count)],
                             out_dir / f"{Path(image_path).stem}.{name}.png",
                             f"{name}: {count} of {maps.shape[-1]} channels", cmap="viridis"))
    return written


def save_filter_patterns(path, layer, out=None, filters=16, steps=30):
    """A PNG grid of the input patterns that maximise the first ``filters`` filters of ``layer``.

    Example:
        >>> save_filter_patterns("runs/demo-finetune-20261123-171500", "block1_conv1")
    """
    predictor = _keras_predictor(path)
    patterns = filter_patterns(predictor.model, layer, filters=filters, steps=steps)
    out = Path(out) if out else Path(predictor.path) / "explain" / f"filters.{layer}.png"
    return image_grid(list(patterns), [f"filter {i}" for i in range(len(patterns))], out, f"{layer}: filter patterns")
