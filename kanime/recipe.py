"""Recipes: one YAML file describes a whole training run.

A recipe is a tree of pydantic models (`Recipe` holding `DataConfig`, `ModelConfig`,
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

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pydantic
import yaml
from pydantic import AfterValidator, BeforeValidator, Field, StrictInt

from kanime.atomic import atomic_path
from kanime.tags import PAPER_TAGS, TagVocabulary

OVERRIDE_SOURCE = "--set"


class RecipeError(ValueError):
    """A recipe file, mapping or override that does not describe a valid run."""


# --- value types: pydantic checks them; a ValueError's message completes "expected ..."


def _yaml_number(value):
    """PyYAML reads `2e-4` (no dot) as a string: a number field takes it as a float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


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


Number = Annotated[float, BeforeValidator(_yaml_number)]
Name = Annotated[str, AfterValidator(_non_empty)]
Resolution = Annotated[int, AfterValidator(_power_of_two)]
Tags = Annotated[Union[Literal["paper"], dict], AfterValidator(_tag_vocabulary)]  # noqa: UP007


class _Section(pydantic.BaseModel):
    """A recipe section: strict types (no `true` for 1, no `"64"` for 64), finite
    numbers, no unknown keys."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# --- the schema -----------------------------------------------------------------


class DataConfig(_Section):
    """Where the training faces come from.

    Attributes:
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
    num_images: int = Field(20000, ge=1)
    flip: bool = True
    allow_untagged: bool = True


class GeneratorConfig(_Section):
    """The SRResNet-like generator.

    Attributes:
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

    channels: int = Field(64, ge=1)
    num_blocks: int = Field(16, ge=1)
    upsample_channels: int = Field(256, ge=1)
    activation: Literal["prelu", "relu"] = "prelu"
    upsample_init: Literal["default", "icnr"] = "default"
    upsample: Literal["subpixel", "resize"] = "subpixel"


class DiscriminatorConfig(_Section):
    """The residual discriminator.

    Attributes:
        channels: width of the first stage (doubled at each later stage).
        blocks_per_stage: residual blocks per stage.

    Examples:
        >>> DiscriminatorConfig(channels=16).blocks_per_stage
        2
    """

    channels: int = Field(32, ge=1)
    blocks_per_stage: int = Field(2, ge=1)


class ModelConfig(_Section):
    """The sizes of both networks.

    Attributes:
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

    resolution: Resolution = 128
    latent_dim: int = Field(128, ge=1)
    tag_encoding: Literal["binary", "signed"] = "binary"
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)


class TrainingConfig(_Section):
    """The optimisation: DRAGAN losses, Adam, step decay and an EMA generator.

    Attributes:
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

    batch_size: int = Field(64, ge=1)
    steps: int = Field(100000, ge=1)
    learning_rate: Number = Field(2e-4, gt=0)
    d_learning_rate: Number | None = Field(None, gt=0)
    beta_1: Number = Field(0.5, ge=0, lt=1)
    beta_2: Number = Field(0.999, ge=0, lt=1)
    lr_decay_steps: int = Field(50000, ge=1)
    lr_decay_factor: Number = Field(0.1, gt=0, le=1)
    lambda_adv: Number = Field(34.0, ge=0)
    lambda_gp: Number = Field(0.5, ge=0)
    lambda_tag: Number = Field(1.0, ge=0)
    tag_loss: Literal["sigmoid", "grouped"] = "sigmoid"
    penalty: Literal["dragan", "r1"] = "dragan"
    augment: Literal["translation", "cutout", "translation+cutout"] | None = None
    stop_gp_above: Number | None = Field(20.0, gt=0)
    stop_adv_loss_above: Number | None = Field(20.0, gt=0)
    fake_tags: Literal["paper", "data"] = "paper"
    ema_half_life_images: Number = Field(10000.0, ge=0)
    jit_compile: bool | Literal["auto"] = "auto"
    mixed_precision: Literal["mixed_bfloat16", "mixed_float16"] | None = None
    distribute: Literal["mirrored", "multi_worker"] | None = None


class LoggingConfig(_Section):
    """How often a run reports and saves, in steps.

    Attributes:
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

    log_every: int = Field(50, ge=1)
    image_every: int = Field(500, ge=1)
    backup_every: int = Field(500, ge=1)
    export_every: int = Field(5000, ge=1)
    grid_size: int = Field(8, ge=1)
    evaluate_every: int | None = Field(None, ge=1)
    evaluate_n: int = Field(1000, ge=2)
    evaluate_features: Literal["inception", "tagger"] = "inception"
    evaluate_tagger: str | None = None


class _RecipeBase(_Section):
    """What every kind of recipe has: a tag vocabulary and a plain-dict form."""

    @property
    def vocabulary(self) -> TagVocabulary:
        """The `TagVocabulary` of this recipe (`PAPER_TAGS` for `tags: paper`)."""
        return PAPER_TAGS if self.tags == "paper" else TagVocabulary.from_config(self.tags)

    def to_dict(self) -> dict:
        """A plain, YAML-dumpable nested dict; `recipe_from_dict` reads it back."""
        return self.model_dump()


class Recipe(_RecipeBase):
    """A whole run: data, models, training and logging, plus a name and a seed.

    Build one with `load_recipe` or `recipe_from_dict`, whose errors name the file
    or `--set` they come from; the constructor checks the same rules.

    Attributes:
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

    name: Name = "kanime"
    seed: int = Field(0, ge=0)
    tags: Tags = "paper"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    def run_name(self, counter: int) -> str:
        """A run folder name like `00003-quickstart-32-b64` (counter, name, resolution,
        batch size); characters other than letters, digits, `.`, `_`, `-` become `-`."""
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise ValueError(f"Expected a run counter >= 0. Received: {counter!r}")
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-") or "run"
        return f"{counter:05d}-{name}-{self.model.resolution}-b{self.training.batch_size}"


# --- the tagger's schema ---------------------------------------------------------


class TaggerDataConfig(_Section):
    """The tagged faces a tagger trains on, and the share held out to evaluate it.

    Attributes:
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
    num_images: int = Field(6000, ge=1)
    holdout: Annotated[StrictInt | Number, AfterValidator(_holdout)] = 0.1
    flip: bool = True


class TaggerModelConfig(_Section):
    """The tagger network (see `kanime.tagger.model.build_tagger`).

    Attributes:
        resolution: the side, in pixels, faces are resized to (a multiple of 16).
        channels: channels of the first of the four stages (doubled at each).

    Examples:
        >>> TaggerModelConfig().resolution
        64
    """

    resolution: Annotated[int, AfterValidator(_multiple_of_16)] = 64
    channels: int = Field(32, ge=1)


class TaggerTrainingConfig(_Section):
    """The tagger's optimisation: binary cross-entropy per tag, Adam.

    Attributes:
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

    batch_size: int = Field(64, ge=1)
    steps: int = Field(1500, ge=1)
    learning_rate: Number = Field(2e-3, gt=0)
    loss: Literal["binary_crossentropy", "balanced"] = "binary_crossentropy"
    max_positive_weight: Number = Field(20.0, ge=1)


class TaggerLoggingConfig(_Section):
    """How often a tagger run reports and saves, in steps.

    Attributes:
        log_every: steps between the loss scalars (training and held-out loss);
            also the length of a Keras "epoch".
        backup_every: steps between resume backups (a multiple of `log_every`).

    Examples:
        >>> TaggerLoggingConfig().backup_every
        500
    """

    log_every: int = Field(100, ge=1)
    backup_every: int = Field(500, ge=1)


class TaggerRecipe(_RecipeBase):
    """A tagger run (`kanime fit-tagger`): data, model, training and logging.

    Build one with `load_recipe(path, recipe_type=TaggerRecipe)` or
    `recipe_from_dict(mapping, recipe_type=TaggerRecipe)`, whose errors name the
    file or `--set` they come from; the constructor checks the same rules.

    Attributes:
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

    name: Name = "tagger"
    seed: int = Field(0, ge=0)
    tags: Tags = "paper"
    threshold: Number | None = Field(0.5, gt=0, lt=1)
    data: TaggerDataConfig = Field(default_factory=TaggerDataConfig)
    model: TaggerModelConfig = Field(default_factory=TaggerModelConfig)
    training: TaggerTrainingConfig = Field(default_factory=TaggerTrainingConfig)
    logging: TaggerLoggingConfig = Field(default_factory=TaggerLoggingConfig)


# The command that trains each kind of recipe, named when a file of one kind is
# given to the other.
_COMMANDS = {Recipe: ("GAN", "kanime fit"), TaggerRecipe: ("tagger", "kanime fit-tagger")}


# --- pydantic's errors, told the way a recipe's reader needs them -------------------

_TYPE_NAMES = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a finite number (e.g. 0.5 or 2e-4)",
    str: "a string",
    dict: "a mapping",
    type(None): "null",
}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _describe(tp) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return _describe(get_args(tp)[0])
    if origin is Literal:
        choices = [repr(a) for a in get_args(tp)]
        return choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
    if get_args(tp) and origin is not dict:  # a union
        parts = [_describe(a) for a in get_args(tp)]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if _is_section(tp):
        return f"a mapping with keys from {list(tp.model_fields)}"
    return _TYPE_NAMES[tp]


def _describe_range(field) -> str:
    low = high = None
    low_open = high_open = False
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            low = m.ge
        elif isinstance(m, annotated_types.Gt):
            low, low_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            high = m.le
        elif isinstance(m, annotated_types.Lt):
            high, high_open = m.lt, True
    if high is None:
        return f"a value {'>' if low_open else '>='} {low:g}"
    return f"a value in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _is_section(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _show(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def _unknown_key(cls, name, source: str, prefix: str) -> RecipeError:
    key = f"{prefix}.{name}" if prefix else str(name)
    valid = list(cls.model_fields)
    close = difflib.get_close_matches(str(name), valid, n=1)
    dot = f"{prefix}." if prefix else ""
    hint = f" Did you mean `{dot}{close[0]}`?" if close else ""
    level = f"in `{prefix}`" if prefix else "at the top level"
    return RecipeError(
        f"{source}: unknown key `{key}`.{hint} Valid keys {level}: {', '.join(valid)}"
    )


def _recipe_error(recipe_type, error: pydantic.ValidationError, source: str) -> RecipeError:
    """The first of pydantic's errors as a `RecipeError`: the source, the dotted key,
    what was expected and what was received (with a did-you-mean for unknown keys)."""
    errors = error.errors()
    first = errors[0]
    names, section, cls = [], None, recipe_type
    for part in first["loc"]:  # field names, then (for a union) the member that failed
        if not _is_section(cls):
            break
        if part not in cls.model_fields:
            if first["type"] == "extra_forbidden":
                return _unknown_key(cls, part, source, ".".join(names))
            break
        names.append(part)
        section, cls = cls, cls.model_fields[part].annotation
    key = ".".join(names)
    if not names:
        expected, received = _describe(recipe_type), _show(first["input"])
        return RecipeError(f"{source}: a recipe must be {expected}. Received: {received}")
    field = section.model_fields[names[-1]]
    # A union reports one error per member: a failed rule says more than a wrong type.
    same = [e for e in errors if tuple(e["loc"][: len(names)]) == tuple(names)]
    ruled = [e for e in same if e["type"] == "value_error" or e["type"] in _RANGE_ERRORS]
    chosen = (ruled or same)[0]
    if chosen["type"] == "value_error":
        expected = str(chosen["ctx"]["error"])
    elif chosen["type"] in _RANGE_ERRORS:
        expected = _describe_range(field)
    else:
        expected = _describe(field.annotation)
    return RecipeError(f"{source}: `{key}` expected {expected}. Received: {_show(chosen['input'])}")


def _validate(recipe_type, mapping, source: str):
    try:
        return recipe_type.model_validate(mapping)
    except pydantic.ValidationError as e:
        raise _recipe_error(recipe_type, e, source) from None


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
    """`_validate` of a whole recipe; a file of another kind of recipe says which
    command trains it."""
    try:
        return _validate(recipe_type, mapping, source)
    except RecipeError as error:
        for other, (kind, command) in _COMMANDS.items():
            if other is recipe_type or not isinstance(mapping, Mapping):
                continue
            try:
                _validate(other, mapping, source)
            except RecipeError:
                continue
            raise RecipeError(
                f"{error}. {source} reads as a {kind} recipe: train it with `{command}`."
            ) from error
        raise


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


def _apply(recipe, overrides: Iterable[str], source: str):
    """`recipe` with the overrides written into its dict form, validated again."""
    tree = recipe.to_dict()
    for item in [overrides] if isinstance(overrides, str) else overrides:
        path, value = _parse_override(item, source)
        *parents, last = path.split(".")
        node, cls, prefix = tree, type(recipe), ""
        for part in [*parents, last]:
            if part not in cls.model_fields:
                raise _unknown_key(cls, part, source, prefix)
            prefix = f"{prefix}.{part}" if prefix else part
            field_type = cls.model_fields[part].annotation
            if part == last:
                break
            cls = field_type
            if not _is_section(cls):
                raise RecipeError(
                    f"{source}: `{prefix}` is not a section; set it as a whole with "
                    f"`--set {prefix}=...`. Received: {item!r}"
                )
            node = node[part]
        if _is_section(field_type) and isinstance(value, Mapping):
            value = {**node[last], **value}  # a partial section
        node[last] = value
    return _validate(type(recipe), tree, source)


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
