"""Recipes: YAML files that say what to train on and how, as typed, validated objects.

A recipe is found by name in ``recipes/`` (shipped inside the package) or loaded from a path; unknown keys
and wrong types are rejected with the key named, and ``--set key.sub=value`` overrides any key.
"""
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from transferkit.errors import TransferkitError, did_you_mean


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the images come from: ``sample`` (embedded), ``folder`` (one subfolder per class) or ``tfds``.

    ``strict`` makes unreadable image files an error before training instead of skipping them with a warning;
    ``class_weight`` is ``none``, ``auto`` (``n_samples / (n_classes * count_c)`` from the training split) or
    a mapping of class name (or index) to weight, missing classes weighing 1; every strategy's ``fit`` uses it.
    ``split_seed`` splits a folder with that seed instead of the recipe's (``compare --seeds`` keeps one split).
    """

    source: str = "sample"
    name: Optional[str] = None
    path: Optional[str] = None
    data_dir: Optional[str] = None
    splits: dict = Field(default_factory=dict)
    per_class: Optional[list[int]] = None
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    split_seed: Optional[int] = None
    resize: Literal["squash", "crop", "pad"] = "squash"
    strict: bool = False
    class_weight: Union[Literal["none", "auto"], dict[Union[str, int], float]] = "none"

    @field_validator("class_weight", mode="before")
    @classmethod
    def _none_auto_or_mapping(cls, value):
        positive = isinstance(value, dict) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in value.values())
        if value not in ("none", "auto") and not positive:
            raise ValueError("class_weight takes none, auto or a mapping of class name to a positive weight")
        return value


class HeadConfig(_Section):
    """The classifier put on top of the conv base."""

    pooling: Literal["avg", "max", "flatten"] = "avg"
    units: int = Field(256, ge=0)
    dropout: float = Field(0.5, ge=0, lt=1)
    batchnorm: bool = True


class AugmentConfig(_Section):
    """Augmentations of the course (Keras layers in the input pipeline, on training batches only).

    ``rotation`` is in degrees, shifts, shear and zoom are fractions of the image size; ``random_crop`` is
    AlexNet's random crop as the fraction of the side kept (0.875 ~ 224 of 256), resized back, 1 = off;
    ``pca_color`` is the standard deviation of AlexNet's PCA colour noise (0.1 in the paper), 0 = off;
    ``rand_augment`` is the strength of ``keras.layers.RandAugment`` (two random operations per image), 0 = off.
    These apply where a strategy augments (its ``augment`` key). ``mixup`` and ``cutmix`` are the alpha of
    MixUp's and CutMix's Beta draw (0.2 and 1.0 are usual; 0 = off): they mix every training batch of every
    stage, cached features included (CutMix needs images or feature maps), into soft labels.
    """

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "horizontal"
    rotation: float = Field(40.0, ge=0, le=180)
    width_shift: float = Field(0.2, ge=0, lt=1)
    height_shift: float = Field(0.2, ge=0, lt=1)
    shear: float = Field(0.2, ge=0, lt=1)
    zoom: float = Field(0.2, ge=0, lt=1)
    fill_mode: Literal["nearest", "reflect", "constant", "wrap"] = "nearest"
    random_crop: float = Field(1.0, gt=0, le=1)
    pca_color: float = Field(0.0, ge=0, le=1)
    rand_augment: float = Field(0.0, ge=0, le=1)
    mixup: float = Field(0.0, ge=0)
    cutmix: float = Field(0.0, ge=0)


Rate = Union[Literal["auto"], Annotated[float, Field(gt=0)]]


class StageConfig(_Section):
    """How a strategy's stages train: epochs, Adam's learning rate and its schedule, early stopping, regularisers.

    ``learning_rate: auto`` runs the learning-rate finder (``transferkit lr-find``) before the stage and trains
    at its suggestion. ``schedule``: ``constant``, ``cosine`` (linear warmup over ``warmup_epochs``, then a half
    cosine to 0) or ``one_cycle`` (fastai's). Early stopping watches ``monitor`` on the validation split: a stage
    stops after ``patience`` epochs without improvement (null: never) and, with ``restore_best``, keeps the
    weights of its best epoch. ``ties`` ranks epochs of equal ``val_accuracy``: ``val_loss`` (the lower wins, so a
    plateau of accuracy with a falling loss still counts as progress) or ``first``. ``label_smoothing`` softens the targets; ``ema`` > 0 keeps an exponential moving
    average of the weights with that momentum (0.99 to 0.999 are usual), which validation measures and the
    stage keeps.
    """

    epochs: int = Field(10, ge=0)
    learning_rate: Rate = 1e-3
    schedule: Literal["constant", "cosine", "one_cycle"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0)
    patience: Optional[int] = Field(5, ge=1)
    monitor: Literal["val_loss", "val_accuracy"] = "val_accuracy"  # measured: bench/defaults.py
    ties: Literal["val_loss", "first"] = "val_loss"  # measured: bench/defaults.py
    restore_best: bool = True
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ema: float = Field(0.0, ge=0, lt=1)

    def stage(self, name, epochs=None, learning_rate=None, **extra):
        """The :class:`Stage` called ``name`` with this section's settings (``epochs`` and ``learning_rate``
        given for a stage with its own)."""
        return Stage(name=name, epochs=self.epochs if epochs is None else epochs,
                     learning_rate=self.learning_rate if learning_rate is None else learning_rate,
                     **{key: getattr(self, key) for key in Stage.SHARED}, **extra)

    def stages(self, name):
        """The stages this section trains, in order (one, named ``name``, unless a subclass has more)."""
        return [self.stage(name)]


@dataclass(frozen=True)
class Stage:
    """One stage as the stage runner trains it (:func:`~transferkit.training.stage.train_stage`).

    Example:
        >>> load_recipe("demo").finetune.stages("finetune")[1].learning_rate
        1e-05
    """

    SHARED = ("schedule", "warmup_epochs", "patience", "monitor", "ties", "restore_best", "label_smoothing", "ema")

    name: str
    epochs: int
    learning_rate: object
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    patience: Optional[int] = None
    monitor: str = "val_accuracy"
    ties: str = "val_loss"
    restore_best: bool = True
    label_smoothing: float = 0.0
    ema: float = 0.0
    unfreeze_blocks: Optional[int] = None
    fit: str = "train"  # or "logistic": a linear head fitted by logistic regression, not trained by gradient


class FeatureExtractionConfig(StageConfig):
    """Train a dense head on cached conv-base features.

    ``fit: logistic`` fits a linear head instead, as a logistic regression to convergence (L-BFGS on the
    standardised pooled features, ``C`` cross-validated on the training split; the epoch, rate and regulariser
    keys do not apply), folded into the model's softmax layer.
    """

    fit: Literal["train", "logistic"] = "train"

    def stages(self, name):
        return [self.stage(name, fit=self.fit)]


class FrozenAugmentConfig(StageConfig):
    """Frozen conv base inside the model, head trained end to end on augmented images."""

    augment: bool = True


class FinetuneConfig(StageConfig):
    """Stage 1 trains the head on the frozen base; stage 2 unfreezes the top blocks at a low learning rate.

    ``layer_decay`` < 1 gives the unfrozen blocks discriminative rates: the head trains at ``learning_rate``,
    the top block at ``learning_rate * layer_decay``, the next at ``* layer_decay ** 2`` and so on down.
    ``unfreeze_schedule`` unfreezes gradually: ``[[epoch, blocks], ...]`` (epochs counted from the start of
    stage 2, the first at 0) trains the top ``blocks`` blocks from that epoch on, in place of ``unfreeze_blocks``.
    ``head_fit: logistic`` fits stage 1's head as ``feature_extraction.fit: logistic`` does.
    """

    head_fit: Literal["train", "logistic"] = "train"
    head_epochs: int = Field(5, ge=0)
    head_learning_rate: Rate = 1e-3
    learning_rate: Rate = 1e-5
    unfreeze_blocks: int = Field(1, ge=0)
    layer_decay: float = Field(1.0, gt=0, le=1)
    unfreeze_schedule: Optional[list[tuple[int, int]]] = None
    augment: bool = True

    @field_validator("unfreeze_schedule")
    @classmethod
    def _milestones(cls, value):
        if value is None:
            return value
        epochs = [epoch for epoch, _ in value]
        if not value or epochs[0] != 0 or epochs != sorted(set(epochs)) or any(b < 0 for _, b in value):
            raise ValueError("unfreeze_schedule takes [[epoch, blocks], ...] with rising epochs, the first 0")
        return value

    def milestones(self):
        """``[(first epoch, end epoch, blocks), ...]`` of stage 2, from ``unfreeze_schedule`` or ``unfreeze_blocks``."""
        plan = self.unfreeze_schedule or [(0, self.unfreeze_blocks)]
        ends = [epoch for epoch, _ in plan[1:]] + [self.epochs]
        return [(start, min(end, self.epochs), blocks) for (start, blocks), end in zip(plan, ends)
                if start < self.epochs]

    def stages(self, name="finetune"):
        """The head stage, then one fine-tuning stage per unfreezing milestone (``finetune``, ``finetune-2``, ...)."""
        stages = [self.stage("head", self.head_epochs, self.head_learning_rate, fit=self.head_fit)]
        for i, (start, end, blocks) in enumerate(self.milestones()):
            stages.append(self.stage(name if i == 0 else f"{name}-{i + 1}", end - start, unfreeze_blocks=blocks))
        return stages

    def max_unfrozen(self):
        """The most blocks any milestone unfreezes."""
        return max(blocks for _, _, blocks in self.milestones()) if self.milestones() else self.unfreeze_blocks


class ScratchConfig(StageConfig):
    """A from-scratch baseline on the same data.

    ``image_size``, when set, is the size the baseline trains at instead of the recipe's: a network with no
    pretrained weights has no trained size to match, and small images train it faster, and often better, at
    their own size. An image size asked for (``--image-size``, ``--set image_size=``) applies to every strategy.
    """

    baseline: str = "small_convnet"
    augment: bool = False
    image_size: Optional[int] = Field(None, ge=1)


class Recipe(_Section):
    """A whole run, as a recipe file spells it.

    Example:
        >>> recipe = load_recipe("demo", overrides=["finetune.unfreeze_blocks=2"])
        >>> recipe.finetune.unfreeze_blocks
        2
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)  # names the run folder
    description: str = ""
    data: DataConfig = DataConfig()
    image_size: int = Field(224, ge=1)
    backbone: str = "vgg16"
    weights: str = "imagenet"
    base_blocks: Optional[int] = Field(None, ge=1)
    strategy: str = "finetune"
    seed: int = 42
    batch_size: int = Field(32, ge=1)
    mixed_precision: Literal["none", "auto", "mixed_float16", "mixed_bfloat16"] = "auto"
    jit_compile: bool = False
    deterministic: bool = False  # TensorFlow op determinism: bit-for-bit repeatable runs, a little slower
    distribute: Literal["none", "mirrored", "multiworker"] = "none"
    calibrate: bool = True  # temperature scaling fitted on the validation split, folded into the saved model
    head: HeadConfig = HeadConfig()
    augment: AugmentConfig = AugmentConfig()
    feature_extraction: FeatureExtractionConfig = FeatureExtractionConfig(epochs=30)
    frozen_augment: FrozenAugmentConfig = FrozenAugmentConfig(epochs=20)
    finetune: FinetuneConfig = FinetuneConfig()
    scratch: ScratchConfig = ScratchConfig(epochs=30)

    @model_validator(mode="before")
    @classmethod
    def _scratch_size(cls, data):
        """A scratch run trains at ``scratch.image_size`` when that is set."""
        if isinstance(data, dict) and data.get("strategy") == "scratch":
            scratch = data.get("scratch")
            size = scratch.get("image_size") if isinstance(scratch, dict) else getattr(scratch, "image_size", None)
            if size:
                data = {**data, "image_size": size}
        return data

    def section(self, strategy=None):
        """The hyperparameter section of ``strategy`` (default: the recipe's own)."""
        return getattr(self, strategy or self.strategy)

    def total_epochs(self, strategy=None):
        """Epochs of every stage of ``strategy`` (default: the recipe's own), e.g. finetune's head and fine-tuning.

        Example:
            >>> load_recipe("demo").total_epochs()
            25
        """
        section = self.section(strategy)
        return sum(stage.epochs for stage in section.stages(strategy or self.strategy))

    def replace(self, changes):
        """A validated copy with ``changes`` (``{"dotted.key": value}``) made: how code changes a recipe.

        Example:
            >>> load_recipe("demo").replace({"finetune.epochs": 3, "image_size": 96}).finetune.epochs
            3
        """
        data = self.model_dump()
        for key, value in changes.items():
            *sections, last = key.split(".")
            node = data
            for section in sections:
                node = node[section]
            node[last] = value
        return recipe_from_dict(data)

    def to_yaml(self):
        """The resolved recipe as YAML text, loadable again with :func:`load_recipe`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def recipes_dir():
    """The folder of recipes shipped with transferkit (``recipes/`` of a source checkout in editable mode)."""
    installed = Path(str(resources.files("transferkit"))) / "recipes"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "recipes"


def list_recipes():
    """Names of the shipped recipes.

    Example:
        >>> "demo" in list_recipes()
        True
    """
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_or_folder(recipe, data=None):
    """``(recipe, data)`` for what ``run``, ``compare`` and ``lr-find`` take as RECIPE: a folder, when no data is
    given, is the data of the ``folder`` recipe (``transferkit run photos/``); a name that is neither a shipped
    recipe, a file nor a folder is a one-line error naming the closest recipe or folder beside it.

    Example:
        >>> recipe_or_folder("photos/")
        ('folder', 'photos/')
        >>> recipe_or_folder("photoz")
        TransferkitError: unknown recipe or folder 'photoz' (did you mean 'photos'?); ...
    """
    if data is not None or not isinstance(recipe, (str, Path)) or str(recipe) in list_recipes():
        return recipe, data
    path = Path(recipe)
    if path.is_dir():
        return "folder", recipe
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return recipe, data  # a recipe file, or the error that it is missing
    beside = path.parent if path.parent.is_dir() else None
    folders = [] if beside is None else [str(p) if str(beside) != "." else p.name
                                         for p in beside.iterdir() if p.is_dir() and not p.name.startswith(".")]
    raise TransferkitError(f"unknown recipe or folder '{_show(recipe)}'{did_you_mean(str(path), list_recipes() + folders)}"
                           f"; give a shipped recipe ({', '.join(list_recipes())}), a recipe .yaml file, or a folder "
                           f"with one subfolder of images per class")


def _read(name_or_path):
    path = Path(name_or_path)
    if not path.suffix:
        shipped = recipes_dir() / f"{name_or_path}.yaml"
        if shipped.is_file():
            path = shipped
        elif not path.is_file():
            raise TransferkitError(
                f"unknown recipe '{_show(name_or_path)}'{did_you_mean(name_or_path, list_recipes())}; "
                f"shipped recipes: {', '.join(list_recipes())}, or give a path to a .yaml file"
            )
    if not path.is_file():
        raise TransferkitError(f"recipe file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TransferkitError(f"recipe {path} is not valid YAML: {_yaml_problem(err)}") from err
    if not isinstance(data, dict):
        raise TransferkitError(f"recipe {path} must be a mapping of keys to values")
    data.setdefault("name", path.stem)
    return data


def _yaml_problem(err):
    """PyYAML's complaint with where it is: ``line 4, column 10: expected ',' or ']', but got '<stream end>'``."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _show(text):
    """``text`` with control characters escaped, so an error about it stays on one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(text))


def _fields_at(keys):
    model = Recipe
    for key in keys:
        annotation = model.model_fields[key].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def apply_override(data, assignment):
    """Apply one ``key.sub=value`` override to a recipe dict; the value is parsed as YAML.

    Example:
        >>> apply_override({}, "finetune.learning_rate=1e-4")
        {'finetune': {'learning_rate': '1e-4'}}
    """
    if "=" not in assignment:
        raise TransferkitError(f"--set takes key=value, got '{_show(assignment)}'")
    key, raw = assignment.split("=", 1)
    keys = key.strip().split(".")
    node = data
    for depth, part in enumerate(keys):
        model = _fields_at(keys[:depth])
        if model is not None and part not in model.model_fields:
            where = ".".join(keys[:depth]) or "recipe"
            raise TransferkitError(
                f"unknown key '{_show('.'.join(keys[:depth + 1]))}' in {_show(where)}"
                f"{(_in_sections(part) if depth == 0 else '') or did_you_mean(part, model.model_fields)}"
            )
        if depth == len(keys) - 1:
            try:
                node[part] = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                node[part] = raw
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TransferkitError(f"'{_show('.'.join(keys[:depth + 1]))}' is not a section")
    return data


FLAGS = {"epochs": "--epochs", "learning_rate": "--lr"}  # section keys the CLI sets for the last stage


def _in_sections(key):
    """" (a key of finetune.epochs, scratch.epochs, ...; --epochs sets the last stage's)" for a top-level ``key``
    that lives in sections, or ""."""
    owners = [f"{name}.{key}" for name in Recipe.model_fields
              if (fields := _fields_at([name])) is not None and key in fields.model_fields]
    if not owners:
        return ""
    flag = f"; {FLAGS[key]} sets the last stage's" if key in FLAGS else ""
    return f" (a key of {', '.join(owners)}{flag})"


def _format_error(err):
    first = err.errors()[0]
    where = _show(".".join(str(p) for p in first["loc"]))
    if first["type"] == "extra_forbidden":
        keys = first["loc"]
        model = _fields_at([str(k) for k in keys[:-1]]) if len(keys) > 1 else Recipe
        hint = did_you_mean(keys[-1], model.model_fields) if model else ""
        return f"unknown key '{where}'{hint}"
    return f"bad value for '{where}': {first['msg']} (got {first.get('input')!r})"


def recipe_from_dict(data):
    """Validate a recipe dict into a :class:`Recipe`, with a one-line error naming the bad key."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise TransferkitError(f"recipe {str(data.get('name', '?'))!r}: {_format_error(err)}") from err


def asks_image_size(overrides, image_size=None):
    """True when ``image_size`` is given or one of the ``--set`` ``overrides`` sets ``image_size``.

    Example:
        >>> asks_image_size(["head.units=64", "image_size=96"]), asks_image_size("head.units=64")
        (True, False)
    """
    overrides = [overrides] if isinstance(overrides, str) else overrides
    return image_size is not None or any(o.split("=", 1)[0].strip() == "image_size" for o in overrides)


def load_recipe(name_or_path, overrides=(), **fields):
    """Load a recipe by shipped name or path, apply ``--set`` style overrides and top-level fields.

    ``overrides`` is a list of ``"key.sub=value"`` strings, or one such string.

    Example:
        >>> load_recipe("demo", overrides="head.units=64", strategy="feature_extraction").strategy
        'feature_extraction'
    """
    data = name_or_path.model_dump() if isinstance(name_or_path, Recipe) else _read(name_or_path)
    overrides = [overrides] if isinstance(overrides, str) else list(overrides)
    for assignment in overrides:
        apply_override(data, assignment)
    data.update({key: value for key, value in fields.items() if value is not None})
    if asks_image_size(overrides, fields.get("image_size")) and isinstance(data.get("scratch"), dict):
        data["scratch"]["image_size"] = None  # an image size asked for is every strategy's
    return recipe_from_dict(data)
