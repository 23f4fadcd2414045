"""Recipes: one YAML file describes a whole training run.

A recipe is a tree of dataclasses (`Recipe` holding `DataConfig`, `ModelConfig`,
`TrainingConfig` and `LoggingConfig`) whose defaults are the numbers of Jin et al.
(2017). A file only needs the keys it changes; the others keep their defaults:

```yaml
# recipes/quickstart.yaml
name: quickstart
seed: 1
tags: paper              # or a mapping {groups: [...]}, see TagVocabulary.from_config
data:
  source: procedural     # or tfrecord, with `path: data/shards` (a directory or a glob),
                         # or tfds, with `path:` the kanime_faces builder's manual folder
  num_images: 2000
model:
  resolution: 32
  generator: {num_blocks: 4}
training:
  batch_size: 64
  steps: 2000
  learning_rate: 2e-4    # PyYAML reads this as a string; a float field accepts it
logging:
  image_every: 200
```

A `TaggerRecipe` describes a tagger run (`kanime fit-tagger`) the same way, with its
own sections (`TaggerDataConfig`, `TaggerModelConfig`, `TaggerTrainingConfig`,
`TaggerLoggingConfig`); pass `recipe_type=TaggerRecipe` to `load_recipe` and
`recipe_from_dict`. A file of one kind given to the other names the right command.

Every key and value is checked: an unknown key, a wrong type, a bad choice or an
out-of-range number raises a `RecipeError` naming the source (file or `--set`), the
dotted key, what was expected and what was received. Overrides use the same dotted
keys, with their values read as YAML:

>>> recipe = recipe_from_dict({"name": "quickstart", "model": {"resolution": 32}})
>>> recipe = apply_overrides(recipe, ["training.batch_size=128", "data.path=null"])
>>> recipe.training.batch_size, recipe.training.steps
(128, 100000)
>>> recipe.run_name(3)
'00003-quickstart-32-b128'
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml

from kanime.atomic import atomic_path
from kanime.tags import PAPER_TAGS, TagVocabulary

OVERRIDE_SOURCE = "--set"


class RecipeError(ValueError):
    """A recipe file, mapping or override that does not describe a valid run."""


# --- value checks, attached to fields as metadata ------------------------------
# A check takes the converted value and returns it (possibly normalised), or raises
# a ValueError whose message completes "expected ...".


@dataclasses.dataclass(frozen=True)
class _Range:
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __call__(self, value):
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        if above and below:
            return value
        if self.high == math.inf:
            raise ValueError(f"a value {'>' if self.low_open else '>='} {self.low:g}")
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        raise ValueError(f"a value in {left}{self.low:g}, {self.high:g}{right}")


def _power_of_two(value):
    if value not in (32, 64, 128, 256):
        raise ValueError("a power of two in [32, 256] (32, 64, 128 or 256)")
    return value


def _non_empty(value):
    if not value.strip():
        raise ValueError("a non-empty string")
    return value


def _tag_vocabulary(value):
    if isinstance(value, str):  # "paper", already checked by the Literal type
        return value
    try:  # normalised to the full config, so a dumped recipe shows every setting
        return TagVocabulary.from_config(value).get_config()
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"'paper' or a mapping accepted by TagVocabulary.from_config ({e})") from e


def _multiple_of_16(value):
    if value < 16 or value % 16:
        raise ValueError("a multiple of 16 >= 16 (e.g. 32, 64 or 128)")
    return value


def _holdout(value):
    if (value < 1) if isinstance(value, int) else not 0 < value < 1:
        raise ValueError("a fraction in (0, 1) or a count of faces >= 1")
    return value


def _optional(check):
    """`check`, letting None through."""

    def optional(value):
        return None if value is None else check(value)

    return optional


_AT_LEAST_1 = _Range(1)
_AT_LEAST_0 = _Range(0)


def _field(default, check):
    return dataclasses.field(default=default, metadata={"check": check})


def _section(cls):
    return dataclasses.field(default_factory=cls)


# --- the schema -----------------------------------------------------------------


@dataclasses.dataclass
class DataConfig:
    """Where the training faces come from.

    Args:
        source: `"procedural"` (synthetic faces made on the fly, nothing to
            download), `"tfrecord"` (prepared shards read from `path`) or `"tfds"`
            (the `kanime_faces` TensorFlow Datasets builder over the folder `path`:
            see `kanime.data.tfds.source`; 64 or 128 px).
        path: for `"tfrecord"`, a directory of shards or a glob pattern; for
            `"tfds"`, the builder's manual folder. A relative path is kept as
            written and resolved against the current working directory.
        tfds_dir: for `"tfds"`, where TFDS keeps the prepared dataset; None for
            TFDS's default (`~/tensorflow_datasets`, or `$TFDS_DATA_DIR`).
        num_images: the number of procedural faces (ignored for `"tfrecord"`).
        flip: random horizontal flips.
        allow_untagged: keep faces that have no hair-colour tag.

    Examples:
        >>> DataConfig(source="tfrecord", path="data/shards/*.tfrecord").flip
        True
    """

    source: Literal["procedural", "tfrecord", "tfds"] = "procedural"
    path: str | None = None
    tfds_dir: str | None = None
    num_images: int = _field(20000, _AT_LEAST_1)
    flip: bool = True
    allow_untagged: bool = True


@dataclasses.dataclass
class GeneratorConfig:
    """The SRResNet-like generator.

    Args:
        channels: width of the residual blocks.
        num_blocks: number of residual blocks.
        upsample_channels: width of the sub-pixel upsampling convolutions.
        activation: `"prelu"` (the paper) or `"relu"`.
        upsample_init: the starting kernels of the sub-pixel convolutions:
            `"default"` (Glorot uniform, the paper) or `"icnr"` (the four
            sub-pixels of each output pixel start equal, so a new generator
            draws no checkerboard; Aitken et al., 2017).
        upsample: `"subpixel"` (the paper: convolution, then pixel shuffle) or
            `"resize"` (nearest-neighbour upsampling, then a convolution to
            `upsample_channels / 4`: the same cost, and no checkerboard).

    Examples:
        >>> GeneratorConfig().num_blocks
        16
    """

    channels: int = _field(64, _AT_LEAST_1)
    num_blocks: int = _field(16, _AT_LEAST_1)
    upsample_channels: int = _field(256, _AT_LEAST_1)
    activation: Literal["prelu", "relu"] = "prelu"
    upsample_init: Literal["default", "icnr"] = "default"
    upsample: Literal["subpixel", "resize"] = "subpixel"


@dataclasses.dataclass
class DiscriminatorConfig:
    """The residual discriminator.

    Args:
        channels: width of the first stage (doubled at each later stage).
        blocks_per_stage: residual blocks per stage.

    Examples:
        >>> DiscriminatorConfig(channels=16).blocks_per_stage
        2
    """

    channels: int = _field(32, _AT_LEAST_1)
    blocks_per_stage: int = _field(2, _AT_LEAST_1)


@dataclasses.dataclass
class ModelConfig:
    """The sizes of both networks.

    Args:
        resolution: image side in pixels, a power of two in [32, 256].
        latent_dim: size of the noise vector.
        tag_encoding: tags fed to the generator as `"binary"` {0, 1} or
            `"signed"` {-1, 1} values.
        generator: a `GeneratorConfig`.
        discriminator: a `DiscriminatorConfig`.

    Examples:
        >>> ModelConfig(resolution=64).generator.activation
        'prelu'
    """

    resolution: int = _field(128, _power_of_two)
    latent_dim: int = _field(128, _AT_LEAST_1)
    tag_encoding: Literal["binary", "signed"] = "binary"
    generator: GeneratorConfig = _section(GeneratorConfig)
    discriminator: DiscriminatorConfig = _section(DiscriminatorConfig)


@dataclasses.dataclass
class TrainingConfig:
    """The optimisation: DRAGAN losses, Adam, step decay and an EMA generator.

    Args:
        batch_size: images per step.
        steps: total training steps.
        learning_rate: Adam learning rate of the generator (and of the
            discriminator unless `d_learning_rate` is set).
        d_learning_rate: the discriminator's own learning rate (two time-scale
            update rule, Heusel et al., 2017); null: `learning_rate`.
        beta_1: Adam first-moment decay.
        beta_2: Adam second-moment decay.
        lr_decay_steps: the learning rate is multiplied by `lr_decay_factor`
            every `lr_decay_steps` steps.
        lr_decay_factor: in (0, 1]; 1 keeps the learning rate constant.
        lambda_adv: weight of the adversarial loss against the tag loss.
        lambda_gp: weight of the gradient penalty.
        lambda_tag: weight of the tag loss, in both networks' losses (1 in the paper).
        tag_loss: `"sigmoid"` (the paper: an independent sigmoid cross-entropy per
            tag) or `"grouped"` (one softmax cross-entropy per exclusive group:
            hair colour, eye colour, hair style; sigmoids for the other tags).
        penalty: `"dragan"` (the paper: `(||grad D|| - 1)^2` at points near the
            real images) or `"r1"` (`||grad D||^2` at the real images; its usual
            `gamma` is `2 * lambda_gp`).
        augment: augmentations of every image the discriminator judges, real and
            generated, joined by `+`: `"translation"`, `"cutout"` or
            `"translation+cutout"`; null: none (the paper). Colours are never
            changed: the tags are colours. See `kanime.training.augment`.
        stop_gp_above: stop the run (keeping the last good backup) when the
            penalty's mean over a log interval passes this; null: never.
        stop_adv_loss_above: stop the run when either network's adversarial
            loss (its mean over a log interval) passes this: the other network
            has won outright; null: never.
        fake_tags: tags for generated images drawn as in the `"paper"`, or
            taken from the real batch (`"data"`).
        ema_half_life_images: half-life, in images, of the generator's
            exponential moving average; 0 disables it (the EMA copy is then the
            generator itself).
        jit_compile: `True`, `False` or `"auto"` (let Keras decide).
        mixed_precision: `None`, `"mixed_bfloat16"` or `"mixed_float16"`.
        distribute: data parallelism (see `kanime.training.distribute`): `None`
            trains on one device, `"mirrored"` on every visible device of this
            machine, `"multi_worker"` on several machines. `batch_size` is then
            the global batch, split evenly among the devices.

    Examples:
        >>> TrainingConfig(batch_size=16).learning_rate
        0.0002
    """

    batch_size: int = _field(64, _AT_LEAST_1)
    steps: int = _field(100000, _AT_LEAST_1)
    learning_rate: float = _field(2e-4, _Range(0, low_open=True))
    d_learning_rate: float | None = _field(None, _optional(_Range(0, low_open=True)))
    beta_1: float = _field(0.5, _Range(0, 1, high_open=True))
    beta_2: float = _field(0.999, _Range(0, 1, high_open=True))
    lr_decay_steps: int = _field(50000, _AT_LEAST_1)
    lr_decay_factor: float = _field(0.1, _Range(0, 1, low_open=True))
    lambda_adv: float = _field(34.0, _AT_LEAST_0)
    lambda_gp: float = _field(0.5, _AT_LEAST_0)
    lambda_tag: float = _field(1.0, _AT_LEAST_0)
    tag_loss: Literal["sigmoid", "grouped"] = "sigmoid"
    penalty: Literal["dragan", "r1"] = "dragan"
    augment: Literal["translation", "cutout", "translation+cutout"] | None = None
    stop_gp_above: float | None = _field(20.0, _optional(_Range(0, low_open=True)))
    stop_adv_loss_above: float | None = _field(20.0, _optional(_Range(0, low_open=True)))
    fake_tags: Literal["paper", "data"] = "paper"
    ema_half_life_images: float = _field(10000.0, _AT_LEAST_0)
    jit_compile: bool | Literal["auto"] = "auto"
    mixed_precision: Literal["mixed_bfloat16", "mixed_float16"] | None = None
    distribute: Literal["mirrored", "multi_worker"] | None = None


@dataclasses.dataclass
class LoggingConfig:
    """How often a run reports and saves, in steps.

    Args:
        log_every: steps between loss scalars (also the length of a Keras "epoch").
        image_every: steps between sample grids.
        backup_every: steps between resume backups.
        export_every: steps between `generator.keras` / `discriminator.keras` exports.
        grid_size: the sample grid is `grid_size` x `grid_size` images.
        evaluate_every: steps between small evaluations (a multiple of
            `log_every`), logged as `eval/...` scalars; null (the default) turns
            them off. See `kanime.evaluation.monitor`.
        evaluate_n: generated and training faces each evaluation's FID compares.
        evaluate_features: FID's features: `"inception"` (InceptionV3) or
            `"tagger"` (the `features` layer of `evaluate_tagger`).
        evaluate_tagger: a tagger (`tagger.keras` or its run folder); with one,
            each evaluation also logs the per-tag precision.

    Examples:
        >>> LoggingConfig().grid_size
        8
    """

    log_every: int = _field(50, _AT_LEAST_1)
    image_every: int = _field(500, _AT_LEAST_1)
    backup_every: int = _field(500, _AT_LEAST_1)
    export_every: int = _field(5000, _AT_LEAST_1)
    grid_size: int = _field(8, _AT_LEAST_1)
    evaluate_every: int | None = _field(None, _optional(_AT_LEAST_1))
    evaluate_n: int = _field(1000, _Range(2))
    evaluate_features: Literal["inception", "tagger"] = "inception"
    evaluate_tagger: str | None = None


class _RecipeBase:
    """What every kind of recipe has: a tag vocabulary and a plain-dict form."""

    @property
    def vocabulary(self) -> TagVocabulary:
        """The `TagVocabulary` of this recipe (`PAPER_TAGS` for `tags: paper`)."""
        return PAPER_TAGS if self.tags == "paper" else TagVocabulary.from_config(self.tags)

    def to_dict(self) -> dict:
        """A plain, YAML-dumpable nested dict; `recipe_from_dict` reads it back."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Recipe(_RecipeBase):
    """A whole run: data, models, training and logging, plus a name and a seed.

    Build one with `load_recipe` or `recipe_from_dict`, which validate every
    value; the constructor itself does not.

    Args:
        name: a short name, used in run folder names.
        seed: the random seed (>= 0).
        tags: `"paper"` for the paper's 34 tags, or a mapping accepted by
            `TagVocabulary.from_config` (stored in its full, normalised form).
        data: a `DataConfig`.
        model: a `ModelConfig`.
        training: a `TrainingConfig`.
        logging: a `LoggingConfig`.

    Examples:
        >>> recipe = Recipe(name="quickstart")
        >>> len(recipe.vocabulary)
        34
        >>> recipe_from_dict(recipe.to_dict()) == recipe
        True
    """

    name: str = _field("kanime", _non_empty)
    seed: int = _field(0, _AT_LEAST_0)
    tags: Literal["paper"] | dict = _field("paper", _tag_vocabulary)
    data: DataConfig = _section(DataConfig)
    model: ModelConfig = _section(ModelConfig)
    training: TrainingConfig = _section(TrainingConfig)
    logging: LoggingConfig = _section(LoggingConfig)

    def run_name(self, counter: int) -> str:
        """A run folder name like `00003-quickstart-32-b64` (counter, name, resolution,
        batch size); characters other than letters, digits, `.`, `_`, `-` become `-`."""
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise ValueError(f"Expected a run counter >= 0. Received: {counter!r}")
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-") or "run"
        return f"{counter:05d}-{name}-{self.model.resolution}-b{self.training.batch_size}"


# --- the tagger's schema ---------------------------------------------------------


@dataclasses.dataclass
class TaggerDataConfig:
    """The tagged faces a tagger trains on, and the share held out to evaluate it.

    Args:
        source: `"procedural"` (synthetic faces with true tags), `"tfrecord"` (a
            `kanime prepare` output read from `path`) or `"tfds"` (the `kanime_faces`
            TFDS builder over the folder `path`). Untagged faces are skipped.
        path: for `"tfrecord"`, a directory of shards or a glob pattern; for `"tfds"`,
            the builder's manual folder.
        tfds_dir: for `"tfds"`, where TFDS keeps the prepared dataset; None for its default.
        num_images: the number of procedural faces (ignored for `"tfrecord"`).
        holdout: the faces held out for evaluation: a fraction in (0, 1) (at least
            one batch is held out) or an integer count. They are chosen by a
            permutation seeded by the recipe's seed.
        flip: random horizontal flips of the training faces.

    Examples:
        >>> TaggerDataConfig(holdout=500).num_images
        6000
    """

    source: Literal["procedural", "tfrecord", "tfds"] = "procedural"
    path: str | None = None
    tfds_dir: str | None = None
    num_images: int = _field(6000, _AT_LEAST_1)
    holdout: int | float = _field(0.1, _holdout)
    flip: bool = True


@dataclasses.dataclass
class TaggerModelConfig:
    """The tagger network (see `kanime.tagger.model.build_tagger`).

    Args:
        resolution: the side, in pixels, faces are resized to (a multiple of 16).
        channels: channels of the first of the four stages (doubled at each).

    Examples:
        >>> TaggerModelConfig().resolution
        64
    """

    resolution: int = _field(64, _multiple_of_16)
    channels: int = _field(32, _AT_LEAST_1)


@dataclasses.dataclass
class TaggerTrainingConfig:
    """The tagger's optimisation: binary cross-entropy per tag, Adam.

    Args:
        batch_size: faces per step.
        steps: total training steps (a multiple of `logging.log_every`).
        learning_rate: Adam's learning rate.
        loss: `"binary_crossentropy"`, or `"balanced"`: each tag's positive term
            weighted by its negatives over its positives in the training faces
            (at most `max_positive_weight`), so that rare tags (smile, open mouth,
            glasses) are not learnt as "never" (`kanime.tagger.fit.BalancedCrossentropy`).
        max_positive_weight: the largest weight of a positive term (`"balanced"`).

    Examples:
        >>> TaggerTrainingConfig().learning_rate
        0.002
    """

    batch_size: int = _field(64, _AT_LEAST_1)
    steps: int = _field(1500, _AT_LEAST_1)
    learning_rate: float = _field(2e-3, _Range(0, low_open=True))
    loss: Literal["binary_crossentropy", "balanced"] = "binary_crossentropy"
    max_positive_weight: float = _field(20.0, _AT_LEAST_1)


@dataclasses.dataclass
class TaggerLoggingConfig:
    """How often a tagger run reports and saves, in steps.

    Args:
        log_every: steps between the loss scalars (training and held-out loss);
            also the length of a Keras "epoch".
        backup_every: steps between resume backups (a multiple of `log_every`).

    Examples:
        >>> TaggerLoggingConfig().backup_every
        500
    """

    log_every: int = _field(100, _AT_LEAST_1)
    backup_every: int = _field(500, _AT_LEAST_1)


@dataclasses.dataclass
class TaggerRecipe(_RecipeBase):
    """A tagger run (`kanime fit-tagger`): data, model, training and logging.

    Build one with `load_recipe(path, recipe_type=TaggerRecipe)` or
    `recipe_from_dict(mapping, recipe_type=TaggerRecipe)`, which validate every
    value; the constructor itself does not.

    Args:
        name: a short name; the default run folder is `runs/<name>`.
        seed: seeds the held-out split, the batches and the weights (>= 0).
        tags: `"paper"` for the paper's 34 tags, or a mapping accepted by
            `TagVocabulary.from_config`.
        threshold: the score at which a tag is predicted when the held-out
            faces are evaluated (in an exclusive group only the best tag of the
            group is kept); null uses each tag group's own threshold.
        data: a `TaggerDataConfig`.
        model: a `TaggerModelConfig`.
        training: a `TaggerTrainingConfig`.
        logging: a `TaggerLoggingConfig`.

    Examples:
        >>> recipe = recipe_from_dict({"data": {"holdout": 600}}, recipe_type=TaggerRecipe)
        >>> recipe.name, recipe.data.holdout, recipe.model.resolution, recipe.threshold
        ('tagger', 600, 64, 0.5)
    """

    name: str = _field("tagger", _non_empty)
    seed: int = _field(0, _AT_LEAST_0)
    tags: Literal["paper"] | dict = _field("paper", _tag_vocabulary)
    threshold: float | None = _field(0.5, _optional(_Range(0, 1, low_open=True, high_open=True)))
    data: TaggerDataConfig = _section(TaggerDataConfig)
    model: TaggerModelConfig = _section(TaggerModelConfig)
    training: TaggerTrainingConfig = _section(TaggerTrainingConfig)
    logging: TaggerLoggingConfig = _section(TaggerLoggingConfig)


# The command that trains each kind of recipe, named when a file of one kind is
# given to the other.
_COMMANDS = {Recipe: ("GAN", "kanime fit"), TaggerRecipe: ("tagger", "kanime fit-tagger")}


# --- generic validation driven by the field types ---------------------------------

_NO = object()  # "this value does not fit this type"
_TYPE_NAMES = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a finite number (e.g. 0.5 or 2e-4)",
    str: "a string",
    dict: "a mapping",
    type(None): "null",
}


@functools.cache
def _schema(cls) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp)]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is Literal:
        choices = [repr(a) for a in typing.get_args(tp)]
        return choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys from {list(_schema(tp))}"
    return _TYPE_NAMES[tp]


def _show(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(value, tp, key: str, source: str):
    """`value` as type `tp`, or `_NO`. Nested sections are built (and checked) here."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(tp):
            result = _convert(value, member, key, source)
            if result is not _NO:
                return result
        return _NO
    if origin is Literal:
        fits = any(type(value) is type(a) and value == a for a in typing.get_args(tp))
        return value if fits else _NO
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key) if isinstance(value, Mapping) else _NO
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return _NO
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return _NO
        return number if math.isfinite(number) else _NO
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if tp is dict:
        return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else _NO
    if tp is type(None):
        return None if value is None else _NO
    return value if isinstance(value, tp) else _NO  # bool, str


def _field_value(cls, name: str, value, key: str, source: str):
    """`value` converted and checked for field `name` of `cls`, or a RecipeError."""
    tp, field = _schema(cls)[name]
    result = _convert(value, tp, key, source)
    if result is _NO:
        raise RecipeError(f"{source}: `{key}` expected {_describe(tp)}. Received: {_show(value)}")
    check = field.metadata.get("check")
    if check is not None:
        try:
            result = check(result)
        except ValueError as e:
            raise RecipeError(f"{source}: `{key}` expected {e}. Received: {_show(value)}") from e
    return result


def _key(cls, name, source: str, prefix: str) -> str:
    """The dotted key of field `name` under `prefix`; unknown names raise with hints."""
    key = f"{prefix}.{name}" if prefix else str(name)
    valid = list(_schema(cls))
    if name not in valid:
        close = difflib.get_close_matches(str(name), valid, n=1)
        dot = f"{prefix}." if prefix else ""
        hint = f" Did you mean `{dot}{close[0]}`?" if close else ""
        level = f"in `{prefix}`" if prefix else "at the top level"
        raise RecipeError(
            f"{source}: unknown key `{key}`.{hint} Valid keys {level}: {', '.join(valid)}"
        )
    return key


def _build(cls, mapping, source: str, prefix: str = ""):
    if not isinstance(mapping, Mapping):
        raise RecipeError(
            f"{source}: a recipe must be {_describe(cls)}. Received: {_show(mapping)}"
        )
    values = {}
    for name, value in mapping.items():
        key = _key(cls, name, source, prefix)
        values[name] = _field_value(cls, name, value, key, source)
    return cls(**values)


def _check_recipe(recipe: Recipe | TaggerRecipe, source: str) -> Recipe | TaggerRecipe:
    """Rules that involve several fields."""
    if recipe.data.source != "procedural" and not recipe.data.path:
        raise RecipeError(
            f"{source}: `data.path` is required when `data.source` is "
            f"{recipe.data.source!r}; set it to a directory of TFRecord shards or a glob "
            "pattern (for 'tfds': the builder's manual folder), e.g. `data.path: data/shards` "
            f"or `--set data.path=data/shards`. Received: data.path={recipe.data.path!r}"
        )
    if isinstance(recipe, TaggerRecipe):
        # A tagger run logs, and backs up, at the end of each log interval.
        log_every = recipe.logging.log_every
        for key, value in [
            ("training.steps", recipe.training.steps),
            ("logging.backup_every", recipe.logging.backup_every),
        ]:
            if value % log_every:
                raise RecipeError(
                    f"{source}: `{key}` expected a multiple of `logging.log_every` "
                    f"({log_every}). Received: {value}"
                )
    return recipe


def _build_recipe(recipe_type, mapping, source: str):
    """`_build` of a whole recipe; a file of another kind of recipe says which command
    trains it."""
    try:
        return _build(recipe_type, mapping, source)
    except RecipeError as error:
        for other, (kind, command) in _COMMANDS.items():
            if other is recipe_type or not isinstance(mapping, Mapping):
                continue
            try:
                _build(other, mapping, source)
            except RecipeError:
                continue
            raise RecipeError(
                f"{error}. {source} reads as a {kind} recipe: train it with `{command}`."
            ) from error
        raise


def _merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        both = isinstance(out.get(k), dict) and isinstance(v, Mapping)
        out[k] = _merge(out[k], v) if both else v
    return out


def _parse_override(item, source: str) -> tuple[str, Any]:
    path, sep, text = item.partition("=") if isinstance(item, str) else ("", "", "")
    if not sep or not path.strip():
        raise RecipeError(
            f"{source}: an override must look like `--set key.path=value`, e.g. "
            "`--set training.batch_size=128` or `--set data.path=null`. "
            f"Received: {item!r}"
        )
    try:
        return path.strip(), yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(
            f"{source}: the value of `{path.strip()}` is not valid YAML "
            f"({getattr(e, 'problem', None) or e}). Received: {item!r}"
        ) from e


def _apply(recipe: Recipe, overrides: Iterable[str], source: str) -> Recipe:
    recipe = copy.deepcopy(recipe)
    for item in [overrides] if isinstance(overrides, str) else overrides:
        path, value = _parse_override(item, source)
        *parents, last = path.split(".")
        obj, prefix = recipe, ""
        for part in parents:
            prefix = _key(type(obj), part, source, prefix)
            obj = getattr(obj, part)
            if not dataclasses.is_dataclass(obj):
                raise RecipeError(
                    f"{source}: `{prefix}` is not a section; set it as a whole with "
                    f"`--set {prefix}=...`. Received: {item!r}"
                )
        key = _key(type(obj), last, source, prefix)
        current = getattr(obj, last)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = _merge(dataclasses.asdict(current), value)  # a partial section
        setattr(obj, last, _field_value(type(obj), last, value, key, source))
    return recipe


# --- public API -----------------------------------------------------------------


def recipe_from_dict(mapping: Mapping, source: str = "<dict>", recipe_type=Recipe):
    """A validated recipe from a (possibly partial) nested mapping.

    Args:
        mapping: sections and values, as in a recipe file; missing keys keep
            their defaults.
        source: names the origin of `mapping` in error messages.
        recipe_type: `Recipe` (a GAN, `kanime fit`) or `TaggerRecipe`
            (`kanime fit-tagger`).

    Examples:
        >>> recipe_from_dict({"training": {"batch_size": 16}}).training.steps
        100000
        >>> recipe_from_dict({}, recipe_type=TaggerRecipe).training.steps
        1500
    """
    return _check_recipe(_build_recipe(recipe_type, mapping, source), source)


def apply_overrides(recipe, overrides: Iterable[str], source: str = OVERRIDE_SOURCE):
    """A new recipe with `key.path=value` overrides applied; `recipe` is unchanged.

    Values are read with `yaml.safe_load` (`null` is None, `true` a boolean) and
    checked like file values. A section may be given a mapping, which updates
    only the keys it names.

    Args:
        recipe: the recipe to start from (a `Recipe` or a `TaggerRecipe`).
        overrides: strings such as `"training.batch_size=128"`.
        source: names the origin of the overrides in error messages.

    Examples:
        >>> r = apply_overrides(Recipe(), ["model.generator={channels: 32}", "seed=7"])
        >>> r.model.generator.channels, r.model.generator.num_blocks, r.seed
        (32, 16, 7)
    """
    return _check_recipe(_apply(recipe, overrides, source), source)


def load_recipe(path: str | os.PathLike, overrides: Iterable[str] = (), recipe_type=Recipe):
    """Read, validate and override a recipe file.

    Args:
        path: the YAML file. An empty file gives the default recipe.
        overrides: `key.path=value` strings applied after the file (see
            `apply_overrides`); the cross-field rules are checked last.
        recipe_type: `Recipe` (a GAN, `kanime fit`) or `TaggerRecipe`
            (`kanime fit-tagger`).

    Examples:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp, "r.yaml")
        ...     _ = path.write_text("model: {resolution: 32}")
        ...     load_recipe(path, ["training.batch_size=8"]).run_name(0)
        '00000-kanime-32-b8'
    """
    source = os.fspath(path)
    overrides = [overrides] if isinstance(overrides, str) else list(overrides)
    try:
        with open(path, encoding="utf-8") as f:
            mapping = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise RecipeError(f"Recipe file not found: {source}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"Cannot read recipe file {source}: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        raise RecipeError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from e
    recipe = _build_recipe(recipe_type, {} if mapping is None else mapping, source)
    recipe = _apply(recipe, overrides, OVERRIDE_SOURCE)
    return _check_recipe(recipe, f"{source} with --set overrides" if overrides else source)


def dump_recipe(recipe, path: str | os.PathLike) -> None:
    """Write `recipe` as YAML, atomically (a temporary file then `os.replace`).

    Args:
        recipe: the recipe to write (a `Recipe` or a `TaggerRecipe`); `load_recipe`
            reads back an equal one.
        path: the destination file; its directory must exist.
    """
    path = os.fspath(path)
    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=False)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
