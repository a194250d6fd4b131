"""What a run prints before it trains: the data, the network, the stages and the dtype policy, each in a line;
and the warnings a user should see before spending the time (a class that validation or test never shows).

Example:
    >>> print("\\n".join(run_summary(recipe, splits, "mixed_bfloat16")))
    data      demo: 10 classes; train 50 (5 per class), val 200, test 300; 224 px, squash
"""
from transferkit.data.sources import class_counts


def _per_class(counts):
    low, high = min(counts), max(counts)
    return f"{low} per class" if low == high else f"{low}-{high} per class"


def _rate(rate):
    return rate if rate == "auto" else f"{rate:g}"


def _stages(recipe):
    from transferkit.strategies import STRATEGIES

    stages = STRATEGIES[recipe.strategy].stages(recipe)
    parts = []
    for stage in stages:
        if not stage.epochs:
            continue
        if stage.fit == "logistic":
            parts.append(f"{stage.name} fitted as a logistic regression (C chosen by {stage.monitor})")
            continue
        blocks = f" (top {stage.unfreeze_blocks} block(s) unfrozen)" if stage.unfreeze_blocks is not None else ""
        parts.append(f"{stage.name}{blocks} {stage.epochs} epochs at lr {_rate(stage.learning_rate)}")
    trained = [stage for stage in stages if stage.epochs and stage.fit != "logistic"]
    if not trained:  # a logistic fit alone: no epochs, so no schedule and no early stopping
        return ", then ".join(parts)
    first = trained[0]
    stopping = f"early stopping on {first.monitor} after {first.patience}" if first.patience else "no early stopping"
    kept = ", best epoch kept" if first.restore_best else ""
    return f"{', then '.join(parts)}; {first.schedule} schedule, {stopping}{kept}"


def run_summary(recipe, splits, policy, probes=None):
    """The lines printed before training, and the warnings (``(lines, warnings)``).

    Example:
        >>> lines, warnings = run_summary(recipe, splits, "float32")
    """
    counts = {split: class_counts(splits, split) for split in ("train", "val", "test")}
    lines = [f"data      {recipe.name}: {splits.num_classes} classes; train {splits.counts['train']} "
             f"({_per_class(counts['train'])}), val {splits.counts['val']}, test {splits.counts['test']}; "
             f"{recipe.image_size} px, {recipe.data.resize}"]
    from transferkit.strategies import STRATEGIES

    if not STRATEGIES[recipe.strategy].uses_backbone:
        lines.append(f"network   {recipe.scratch.baseline} from scratch")
    else:
        blocks = "all blocks" if recipe.base_blocks is None else f"blocks 1-{recipe.base_blocks}"
        chosen = " (chosen by backbone auto)" if probes else ""
        lines.append(f"network   {recipe.backbone}{chosen}, weights {recipe.weights}, {blocks}")
    lines.append(f"stages    {_stages(recipe)}; batch {recipe.batch_size}, seed {recipe.seed}")
    lines.append(f"dtype     {policy or 'float32'}")
    warnings = []
    for split in ("val", "test"):
        missing = [name for name, count in zip(splits.class_names, counts[split]) if count == 0]
        if missing:
            warnings.append(f"warning: no {split} images of class {', '.join(map(repr, missing[:3]))}"
                            f"{' ...' if len(missing) > 3 else ''}: its {split} accuracy cannot be measured")
    if recipe.jit_compile and recipe.deterministic:
        warnings.append("warning: jit_compile: true changes nothing with deterministic: true (Keras compiles with "
                        "XLA only while TensorFlow's op determinism is off)")
    return lines, warnings
