"""`kanime fit`: train a recipe into a run directory, resuming where it stopped.

A run directory holds:

- `recipe.yaml`: the resolved recipe;
- `logs/`: TensorBoard events (losses every `log_every` steps, a sample grid every
  `image_every` steps) and `metrics.jsonl`;
- `samples/`: the sample grids as PNG files;
- `backup/state.weights.h5`: everything needed to resume (models, EMA, both optimizers,
  step, seed);
- `generator.keras` (EMA weights) and `discriminator.keras`.

Every file is written atomically. Running the same command again on a killed
run continues from its last backup with its optimizer state and step count.
"""

import contextlib
import dataclasses
import os
from pathlib import Path

import keras
import yaml

from kanime.data.batches import ArrayBatches
from kanime.data.pipeline import check_prepared, load_source, make_dataset
from kanime.data.procedural import make_faces
from kanime.evaluation.monitor import evaluation_callbacks
from kanime.images import conditioning_grid_inputs
from kanime.models import Discriminator, Generator
from kanime.recipe import (
    Recipe,
    RecipeError,
    apply_overrides,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
)
from kanime.run.callbacks import fit_steps
from kanime.run.checkpoint import CheckpointError, load_state, read_meta
from kanime.run.layout import RunFolder
from kanime.run.metrics_log import drop_logs_after, read_metrics
from kanime.training import distribute
from kanime.training.gan import TagGAN
from kanime.training.monitor import DIVERGENCE_HINT, NAN_HINT, GANMonitor

# The parts of a recipe that fix the shapes of the variables a backup holds.
SHAPE_KEYS = ("model", "tags")


@dataclasses.dataclass
class FitResult:
    """What `fit` did: the run folder, the step it reached and the last logged losses."""

    run_dir: Path
    step: int
    resumed_from: int
    losses: dict


@contextlib.contextmanager
def dtype_policy(name):
    """Layers made inside compute in the dtype policy `name` (e.g. `"mixed_bfloat16"`)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_gan(recipe: Recipe) -> TagGAN:
    """The compiled `TagGAN` a recipe describes.

    With `training.mixed_precision` the generator and discriminator compute in
    bfloat16 or float16 and keep float32 weights; the losses and the DRAGAN
    penalty are float32. `mixed_float16` also scales both losses dynamically
    (`keras.optimizers.LossScaleOptimizer`), skipping steps whose gradients overflow.

    With `training.distribute` everything is built in `distribute.scope`; on JAX,
    also call the GAN's `fit` inside it (`fit` below does).

    Raises:
        RecipeError: `training.batch_size` does not split among the replicas, or
            `training.jit_compile: true` meets `training.distribute` on TensorFlow.
    """
    t = recipe.training
    if t.distribute is not None:
        distribute.check_batch_size(t.batch_size, distribute.num_replicas(t.distribute))
        distribute.check_jit_compile(t.jit_compile)
    with distribute.scope(t.distribute):
        return _build_gan(recipe)


def _build_gan(recipe: Recipe) -> TagGAN:
    t = recipe.training
    vocabulary = recipe.vocabulary
    with dtype_policy(t.mixed_precision or "float32"):
        generator, discriminator = _models(recipe)
    gan = TagGAN(
        generator,
        discriminator,
        vocabulary=vocabulary,
        fake_tags=t.fake_tags,
        ema_half_life_images=t.ema_half_life_images,
        seed=recipe.seed,
    )
    if t.distribute is not None:
        # After TagGAN has copied the config into the EMA generator, which is exported.
        distribute.synchronize_batch_norm(gan.generator)

    def adam(name, learning_rate):
        schedule = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, t.lr_decay_steps, t.lr_decay_factor, staircase=True
        )
        optimizer = keras.optimizers.Adam(schedule, beta_1=t.beta_1, beta_2=t.beta_2, name=name)
        if t.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_scaled")
        return optimizer

    gan.compile(
        g_optimizer=adam("g_optimizer", t.learning_rate),
        d_optimizer=adam("d_optimizer", t.d_learning_rate or t.learning_rate),
        lambda_adv=t.lambda_adv,
        lambda_gp=t.lambda_gp,
        jit_compile=t.jit_compile,
        lambda_tag=t.lambda_tag,
        tag_loss=t.tag_loss,
        penalty=t.penalty,
        augment=t.augment,
    )
    return gan


def _models(recipe: Recipe):
    m, vocabulary = recipe.model, recipe.vocabulary
    generator = Generator(
        resolution=m.resolution,
        latent_dim=m.latent_dim,
        num_tags=len(vocabulary),
        channels=m.generator.channels,
        num_blocks=m.generator.num_blocks,
        upsample_channels=m.generator.upsample_channels,
        activation=m.generator.activation,
        tag_encoding=m.tag_encoding,
        upsample_init=m.generator.upsample_init,
        upsample=m.generator.upsample,
        name="generator",
    )
    discriminator = Discriminator(
        resolution=m.resolution,
        num_tags=len(vocabulary),
        channels=m.discriminator.channels,
        blocks_per_stage=m.discriminator.blocks_per_stage,
        name="discriminator",
    )
    return generator, discriminator


def training_data(recipe: Recipe, start: int, stop: int, progress=True):
    """The batches of steps `[start, stop)` and the callbacks they need.

    Procedural faces, the `kanime_faces` TFDS dataset, and prepared TFRecords on
    backends other than TensorFlow, are held in memory and batched by `ArrayBatches`,
    whose batch at a step depends only on the seed and the step. Prepared TFRecords on
    TensorFlow stream through the `tf.data` pipeline, seeded by the recipe's seed and
    the start step.
    """
    data, log = recipe.data, recipe.logging
    size, batch = recipe.model.resolution, recipe.training.batch_size
    if data.source == "procedural":
        images, tags = make_faces(data.num_images, size, seed=recipe.seed, progress=progress)
    elif data.source == "tfrecord" and keras.backend.backend() == "tensorflow":
        check_prepared(data.path)
        dataset = make_dataset(
            data.path, batch, size, num_tags=len(recipe.vocabulary), flip=data.flip,
            seed=recipe.seed * 1_000_003 + start, allow_untagged=data.allow_untagged,
        )  # fmt: skip
        return dataset.take(stop - start), []
    else:
        images, tags = load_source(
            data, size, len(recipe.vocabulary), data.allow_untagged, progress=progress
        )
    batches = ArrayBatches(images, tags, batch, log.log_every, seed=recipe.seed, flip=data.flip)
    return batches.for_fit(start, stop)


def _check_intervals(recipe: Recipe):
    log = recipe.logging
    steps = recipe.training.steps
    for key in ("image_every", "backup_every", "export_every"):
        value = getattr(log, key)
        if value % log.log_every:
            raise RecipeError(
                f"logging.{key} ({value}) must be a multiple of logging.log_every "
                f"({log.log_every}): the run writes at the end of each log interval."
            )
    if steps % log.log_every:
        raise RecipeError(
            f"training.steps ({steps}) must be a multiple of logging.log_every ({log.log_every})."
        )


def _check_same_model(previous: Recipe, recipe: Recipe, run_dir: Path):
    old, new = previous.to_dict(), recipe.to_dict()
    changed = [k for k in SHAPE_KEYS if old[k] != new[k]]
    if changed:
        raise RecipeError(
            f"{run_dir} holds a run of a different model ({', '.join(changed)} differ from "
            "this recipe), so it cannot resume from it. Use another --run-dir, or the "
            f"recipe in {RunFolder(run_dir).recipe}."
        )


def fit(recipe, run_dir=None, overrides=(), progress=True) -> FitResult:
    """Trains a recipe into `run_dir`, resuming from its last backup when there is one.

    Args:
        recipe: a `Recipe` or the path of a recipe YAML file.
        run_dir: the run folder; by default `runs/<recipe name>`.
        overrides: dotted `key.path=value` overrides (`--set` on the command line).
        progress: show a progress bar.

    Returns:
        A `FitResult`.

    Raises:
        RecipeError: a bad recipe, override or data path.
        NonFiniteLossError: a loss became NaN; the last good backup is kept.
        DivergenceError: the penalty or an adversarial loss passed its
            `training.stop_*` limit; the last good backup is kept.
    """
    if isinstance(recipe, (str, os.PathLike)):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        recipe = apply_overrides(recipe, overrides)
    _check_intervals(recipe)
    # On JAX the distribution must stay set from building the GAN to the end of its `fit`.
    with distribute.scope(recipe.training.distribute):
        return _fit(recipe, run_dir, progress)


def _fit(recipe: Recipe, run_dir, progress) -> FitResult:
    processes = distribute.num_processes(recipe.training.distribute)
    if processes > 1 and recipe.logging.evaluate_every is not None:
        raise RecipeError(
            "`logging.evaluate_every` does not work with `training.distribute: multi_worker` "
            "on JAX: Keras's `predict`, which the evaluation runs, cannot gather outputs that "
            "other JAX processes hold. "
            "Leave it unset and run `kanime evaluate` on the run afterwards. "
            f"Received: logging.evaluate_every={recipe.logging.evaluate_every}"
        )
    run_dir = Path(run_dir or Path("runs") / recipe.name)
    worker = distribute.worker_name(recipe.training.distribute)
    if worker is not None:  # a multi-worker run's other workers keep their own copy
        run_dir = run_dir / "workers" / worker
    run = RunFolder(run_dir)
    if run.recipe.exists() and run.backup.exists():
        with open(run.recipe) as f:
            previous = recipe_from_dict(yaml.safe_load(f), source=str(run.recipe))
        _check_same_model(previous, recipe, run_dir)

    keras.utils.set_random_seed(recipe.seed)
    gan = build_gan(recipe)
    try:
        load_state(gan, run.backup)  # the step counter too
    except CheckpointError as e:
        raise RecipeError(str(e)) from e
    resumed_from = gan.step
    run_dir.mkdir(parents=True, exist_ok=True)
    drop_logs_after(run_dir, resumed_from)  # what a killed run logged after its backup
    dump_recipe(recipe, run.recipe)

    log = recipe.logging
    total = recipe.training.steps
    grid = recipe.logging.grid_size
    z, tags, _ = conditioning_grid_inputs(
        recipe.vocabulary, grid, grid, recipe.model.latent_dim, seed=recipe.seed
    )
    monitor = GANMonitor(
        run_dir, total, log.log_every, log.image_every, log.backup_every, log.export_every,
        (z, tags, grid, grid), meta={"recipe": recipe.name},
        batch_size=recipe.training.batch_size,
        limits={"gp": recipe.training.stop_gp_above,
                "d_adv_loss": recipe.training.stop_adv_loss_above,
                "g_adv_loss": recipe.training.stop_adv_loss_above},
    )  # fmt: skip
    if resumed_from >= total:
        if not run.generator.exists():
            monitor.set_model(gan)
            monitor.export()
        return FitResult(run_dir, resumed_from, resumed_from, _last_losses(run_dir))

    # Before `monitor`: they add `eval/...` values to the logs it writes.
    evaluation = evaluation_callbacks(recipe)
    data, data_callbacks = training_data(recipe, resumed_from, total, progress=progress)
    if processes > 1:  # multi-process JAX: each process feeds its part of the global batch
        import jax

        data = distribute.ProcessPart(data, jax.process_index(), processes)
    fit_steps(
        gan, data, monitor, total, log.log_every, resumed_from, before=evaluation,
        after=data_callbacks, progress=progress, hint=NAN_HINT, divergence_hint=DIVERGENCE_HINT,
    )  # fmt: skip
    return FitResult(run_dir, gan.step, resumed_from, _last_losses(run_dir))


def _last_losses(run_dir: Path) -> dict:
    rows = read_metrics(run_dir)
    return rows[-1] if rows else {}


def backup_step(run_dir) -> int | None:
    """The step of a run's last backup, or None when it has none."""
    path = RunFolder(run_dir).backup
    return read_meta(path)["step"] if path.exists() else None


__all__ = ["FitResult", "build_gan", "fit", "training_data", "backup_step"]
