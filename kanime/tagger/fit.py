"""Training the tagger (`kanime.tagger.model`).

`fit_tagger` trains it from a `TaggerRecipe` (`kanime fit-tagger RECIPE`) on tagged
faces (a `kanime prepare` output, or procedural faces), holds out a seeded split,
reports per-tag precision and recall on it, and exports `tagger.keras`: images in
[-1, 1] -> one score in [0, 1] per tag. Like the generator, the export is made of
built-in Keras layers only.

A tagger run directory (`runs/<recipe name>` unless told otherwise) holds:

- `recipe.yaml`: the resolved recipe;
- `logs/`: TensorBoard scalars (`loss`, held-out `val_loss`, `learning_rate`) every
  `log_every` steps, and the same rows in `metrics.jsonl`;
- `backup/state.weights.h5`: the weights and the optimizer's state, every
  `backup_every` steps; running the same command again resumes from it;
- `tagger.keras`, `settings.json` (`image_size`, `tags`, `threshold`, `vocabulary`)
  and `evaluation.json` (per-tag precision, recall and support on the held-out faces).

Every file is written atomically.
"""

import dataclasses
import json
import os
from pathlib import Path

import keras
import numpy as np
import yaml

from kanime.atomic import atomic_path
from kanime.data.batches import ArrayBatches
from kanime.data.pipeline import load_source
from kanime.data.procedural import make_faces
from kanime.models.export import save_model_atomic
from kanime.recipe import (
    RecipeError,
    TaggerRecipe,
    apply_overrides,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
)
from kanime.run.callbacks import RunMonitor, fit_steps, training_step
from kanime.run.checkpoint import CheckpointError, load_state
from kanime.run.layout import RunFolder
from kanime.run.metrics_log import drop_logs_after, read_metrics
from kanime.tagger.model import build_tagger
from kanime.tags import PAPER_TAGS

# The parts of a recipe that fix the shapes of the variables a backup holds, and
# those that choose the held-out faces (which a resumed run must not train on).
SHAPE_KEYS = ("model", "tags")
SPLIT_KEYS = ("seed", "data.source", "data.path", "data.num_images", "data.holdout")
NAN_HINT = "Lower training.learning_rate if it happens again."


def precision_recall(predicted, truth, vocabulary=PAPER_TAGS):
    """Per-tag precision, recall and support of 0/1 `predicted` tags against `truth`.

    Examples:
        >>> rows = precision_recall([[1] + [0] * 33], [[1] + [0] * 33])
        >>> rows["blonde hair"]["precision"], rows["brown hair"]["precision"]
        (1.0, None)
    """
    predicted, truth = np.asarray(predicted) > 0.5, np.asarray(truth) > 0.5
    rows = {}
    for i, name in enumerate(vocabulary.names):
        tp = int(np.sum(predicted[:, i] & truth[:, i]))
        found, support = int(predicted[:, i].sum()), int(truth[:, i].sum())
        rows[name] = {
            "precision": tp / found if found else None,
            "recall": tp / support if support else None,
            "support": support,
            "predicted": found,
        }
    return rows


@dataclasses.dataclass
class TaggerResult:
    """What `fit_tagger` did: the run folder, the step reached, the step it resumed
    from (0 for a new run) and the held-out evaluation (as in `evaluation.json`)."""

    run_dir: Path
    step: int
    resumed_from: int
    evaluation: dict


def _data_name(recipe):
    return "procedural" if recipe.data.source == "procedural" else recipe.data.path


def load_tagged_faces(recipe, progress=False):
    """The recipe's tagged faces as `(images, tags)`: uint8 `(n, r, r, 3)`, float32 `(n, T)`.

    Procedural faces, or every tagged face of a prepared dataset (untagged ones are
    skipped), at `model.resolution`.
    """
    data, size = recipe.data, recipe.model.resolution
    if data.source == "procedural":
        try:
            return make_faces(data.num_images, size, recipe.seed, recipe.vocabulary, progress)
        except ValueError as e:
            raise RecipeError(f"tags: {e}. Use `tags: paper` with procedural data.") from e

    return load_source(data, size, len(recipe.vocabulary), allow_untagged=False,
                       progress=progress)  # fmt: skip


def held_out_split(num_faces, recipe):
    """`(held_out, train)` indices: a permutation seeded by the recipe's seed.

    A fractional `data.holdout` holds out at least one batch; an integer holds out
    exactly that many faces.
    """
    batch, holdout = recipe.training.batch_size, recipe.data.holdout
    if num_faces < 2 * batch:
        raise RecipeError(
            f"{_data_name(recipe)}: {num_faces} tagged faces; the tagger needs at least "
            f"{2 * batch} (two batches of training.batch_size={batch})."
        )
    n_val = holdout if isinstance(holdout, int) else max(batch, int(num_faces * holdout))
    if num_faces - n_val < batch:
        raise RecipeError(
            f"data.holdout ({holdout}) holds out {n_val} of the {num_faces} tagged faces, "
            f"which leaves fewer than one batch (training.batch_size={batch}) to train on."
        )
    order = np.random.default_rng(recipe.seed).permutation(num_faces)
    return order[:n_val], order[n_val:]


class BalancedCrossentropy(keras.losses.Loss):
    """Binary cross-entropy per tag with each tag's positive term weighted.

    `positive_weight[t]` is set from the training tags before `fit` (see
    `positive_weights`); all ones is plain binary cross-entropy.

    Args:
        num_tags: the number of tags.

    Examples:
        >>> loss = BalancedCrossentropy(2)
        >>> loss.positive_weight = np.array([1.0, 4.0], "float32")
        >>> y_true, y_pred = np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]])
        >>> round(float(loss(y_true, y_pred)), 4)  # (1 + 4) * ln 2 / 2
        1.7329
    """

    def __init__(self, num_tags, name="balanced_crossentropy"):
        super().__init__(name=name)
        self.num_tags = num_tags
        self.positive_weight = np.ones(num_tags, "float32")

    def call(self, y_true, y_pred):
        y_pred = keras.ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        weight = keras.ops.convert_to_tensor(self.positive_weight)
        terms = weight * y_true * keras.ops.log(y_pred) + (1.0 - y_true) * keras.ops.log(
            1.0 - y_pred
        )
        return -keras.ops.mean(terms, axis=-1)

    def get_config(self):
        return {"num_tags": self.num_tags, "name": self.name}


def positive_weights(tags, max_weight):
    """Each tag's negatives over its positives in `tags`, in `[1, max_weight]`.

    Examples:
        >>> positive_weights(np.array([[1, 0], [0, 0], [0, 0], [0, 1]]), 2.0).tolist()
        [2.0, 2.0]
        >>> positive_weights(np.array([[1, 1], [1, 0]]), 10.0).tolist()
        [1.0, 1.0]
    """
    tags = np.asarray(tags, "float64")
    positives = tags.sum(axis=0)
    ratio = (len(tags) - positives) / np.maximum(positives, 1.0)
    return np.clip(ratio, 1.0, max_weight).astype("float32")


def build_tagger_for(recipe):
    """The compiled tagger a recipe describes, with weights seeded by its seed."""
    keras.utils.set_random_seed(recipe.seed)
    num_tags = len(recipe.vocabulary)
    model = build_tagger(recipe.model.resolution, num_tags, recipe.model.channels)
    loss = "binary_crossentropy"
    if recipe.training.loss == "balanced":
        loss = BalancedCrossentropy(num_tags)
    model.compile(keras.optimizers.Adam(recipe.training.learning_rate), loss=loss)
    return model


def _run_keys(recipe):
    flat = {"seed": recipe.seed, "model": recipe.to_dict()["model"], "tags": recipe.tags}
    flat.update({f"data.{k}": v for k, v in recipe.data.model_dump().items()})
    # A value the source ignores does not change the run.
    ignored = "data.path" if recipe.data.source == "procedural" else "data.num_images"
    flat[ignored] = None
    return flat


def _check_same_run(recipe_file, recipe, run_dir):
    try:
        with open(recipe_file, encoding="utf-8") as f:
            previous = recipe_from_dict(
                yaml.safe_load(f), source=str(recipe_file), recipe_type=TaggerRecipe
            )
    except (RecipeError, yaml.YAMLError) as e:
        raise RecipeError(
            f"{run_dir} does not hold a tagger run ({recipe_file} is not a tagger recipe), so "
            "fit-tagger cannot resume from it. Use another --run-dir."
        ) from e
    old, new = _run_keys(previous), _run_keys(recipe)
    for keys, what, why in [
        (SHAPE_KEYS, "a different model", ""),
        (SPLIT_KEYS, "a different held-out split", ": faces it trained on would be evaluated"),
    ]:
        changed = [k for k in keys if old[k] != new[k]]
        if changed:
            raise RecipeError(
                f"{run_dir} holds a tagger run of {what} (changed: {', '.join(changed)}{why}), "
                f"so it cannot resume from it. Use another --run-dir, or the recipe in "
                f"{recipe_file}."
            )


def _write_json(path, content):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2)


def _saved_evaluation(run_dir, recipe, step):
    """The run's `evaluation.json` when it is up to date with `step` and the recipe."""
    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    if not (run.tagger.exists() and run.tagger_settings.exists()):
        return None
    try:
        evaluation = json.loads(run.tagger_evaluation.read_text())
    except (OSError, ValueError):
        return None
    current = evaluation.get("steps") == step and evaluation.get("threshold") == recipe.threshold
    return evaluation if current else None


def fit_tagger(recipe, run_dir=None, overrides=(), progress=True) -> TaggerResult:
    """Trains the tagger a recipe describes and evaluates it on the held-out faces.

    Resumes from the run's last backup when there is one; a finished run is not
    trained again (its evaluation is redone only when the threshold changed or
    the exports are missing).

    Args:
        recipe: a `TaggerRecipe` or the path of a tagger recipe YAML file.
        run_dir: the run folder; by default `runs/<recipe name>`.
        overrides: dotted `key.path=value` overrides (`--set` on the command line).
        progress: show progress bars.

    Returns:
        A `TaggerResult`; its `evaluation` has per-tag precision, recall and support
        on the held-out faces.

    Raises:
        RecipeError: a bad recipe, override or dataset, or a run folder that holds a
            different model or held-out split.
        NonFiniteLossError: the loss became NaN; the last good backup is kept.
    """

    if isinstance(recipe, (str, os.PathLike)):
        recipe = load_recipe(recipe, overrides, recipe_type=TaggerRecipe)
    elif overrides:
        recipe = apply_overrides(recipe, overrides)
    if not isinstance(recipe, TaggerRecipe):
        raise RecipeError(
            f"fit_tagger needs a TaggerRecipe (`kanime fit` trains a GAN recipe). "
            f"Received: {type(recipe).__name__}"
        )
    run_dir = Path(run_dir or Path("runs") / recipe.name)
    run = RunFolder(run_dir)
    recipe_file, backup_file = run.recipe, run.backup
    if backup_file.exists():
        _check_same_run(recipe_file, recipe, run_dir)

    model = build_tagger_for(recipe)
    model.optimizer.build(model.trainable_variables)  # so the backup can fill it
    try:
        backup_meta = load_state(model, backup_file) or {}
    except CheckpointError as e:
        raise RecipeError(str(e)) from e
    # The learning rate is the recipe's, not the one the backup was made with.
    model.optimizer.learning_rate = recipe.training.learning_rate
    resumed_from = training_step(model)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_recipe(recipe, recipe_file)

    total, log = recipe.training.steps, recipe.logging
    if resumed_from >= total:
        saved = _saved_evaluation(run_dir, recipe, resumed_from)
        if saved is not None:
            return TaggerResult(run_dir, resumed_from, resumed_from, saved)
    elif resumed_from % log.log_every:
        raise RecipeError(
            f"logging.log_every ({log.log_every}): the backup in {run_dir} is at step "
            f"{resumed_from}, which is not a multiple of it; resume with the log_every in "
            f"{recipe_file}."
        )

    images, tags = load_tagged_faces(recipe, progress=progress)
    if "faces" in backup_meta and backup_meta["faces"] != len(images):
        raise RecipeError(
            f"{_data_name(recipe)} now holds {len(images)} tagged faces; the backup in {run_dir} "
            f"was trained with {backup_meta['faces']}, so its held-out split would change. "
            "Use another --run-dir."
        )
    val, train = held_out_split(len(images), recipe)
    val_images = images[val].astype("float32") / 127.5 - 1.0
    val_tags = tags[val].astype("float32")

    if resumed_from < total:
        drop_logs_after(run_dir, resumed_from)
        if isinstance(model.loss, BalancedCrossentropy):  # before `fit` traces the loss
            model.loss.positive_weight = positive_weights(
                tags[train], recipe.training.max_positive_weight
            )
        batches = ArrayBatches(
            images[train], tags[train], recipe.training.batch_size, log.log_every,
            seed=recipe.seed, flip=recipe.data.flip,
        )  # fmt: skip
        data, data_callbacks = batches.for_fit(resumed_from, total)
        monitor = RunMonitor(
            run_dir, total, log.backup_every,
            meta={"recipe": recipe.name, "faces": len(images), "held_out": len(val)},
        )  # fmt: skip
        fit_steps(
            model, data, monitor, total, log.log_every, resumed_from, after=data_callbacks,
            progress=progress, shown=("loss", "val_loss"), hint=NAN_HINT,
            validation_data=(val_images, val_tags), validation_batch_size=256,
        )  # fmt: skip

    step = training_step(model)
    scores = model.predict(val_images, batch_size=256, verbose=0)
    predicted = recipe.vocabulary.from_scores(scores, threshold=recipe.threshold)
    losses = [row["loss"] for row in read_metrics(run_dir) if "loss" in row]
    evaluation = {
        "recipe": recipe.name,
        "data": _data_name(recipe),
        "held_out": int(len(val)),
        "trained_on": int(len(train)),
        "steps": step,
        "final_loss": losses[-1] if losses else None,
        "threshold": recipe.threshold,
        "per_tag": precision_recall(predicted, val_tags, recipe.vocabulary),
    }
    save_model_atomic(model, run.tagger)
    settings = {
        "image_size": recipe.model.resolution,
        "tags": list(recipe.vocabulary.names),
        "threshold": recipe.threshold,
        "vocabulary": recipe.vocabulary.get_config(),
    }
    _write_json(run.tagger_settings, settings)
    _write_json(run.tagger_evaluation, evaluation)  # last: it marks the run complete
    return TaggerResult(run_dir, step, resumed_from, evaluation)


__all__ = [
    "TaggerResult",
    "BalancedCrossentropy",
    "build_tagger_for",
    "positive_weights",
    "fit_tagger",
    "held_out_split",
    "load_tagged_faces",
    "precision_recall",
]
