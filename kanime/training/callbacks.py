"""Callbacks of a run: logs, sample grids, backups, exports, NaN guard, progress bar.

They act at the end of a Keras epoch, which `kanime.training.fit` (and the tagger's
`fit_tagger`) sets to `logging.log_every` steps: on JAX that is when Keras writes
the jitted state back into the variables, so reading weights there costs nothing extra.
"""

import math
import os
import time
import warnings

import keras

from kanime.images import image_grid, save_png, to_uint8
from kanime.models.export import save_model_atomic
from kanime.training import distribute
from kanime.training.checkpoint import model_state_variables, save_state, save_variables
from kanime.training.metrics_log import append_metrics


class SummaryWriter:
    """TensorBoard scalars and images when TensorFlow is importable; a no-op otherwise."""

    def __init__(self, logdir):
        try:
            import tensorflow as tf
        except ImportError:
            warnings.warn(
                "TensorFlow is not installed: TensorBoard logs are off; losses still go to "
                f"{os.path.join(logdir, 'metrics.jsonl')}.",
                stacklevel=2,
            )
            self._tf = None
            return
        self._tf = tf
        self._writer = tf.summary.create_file_writer(logdir)

    def scalars(self, values, step):
        if self._tf is None:
            return
        with self._writer.as_default(step=step):
            for name, value in values.items():
                self._tf.summary.scalar(name, value)
        self._writer.flush()

    def image(self, name, image, step):
        if self._tf is None:
            return
        with self._writer.as_default(step=step):
            self._tf.summary.image(name, image[None], max_outputs=1)
        self._writer.flush()


class TrainingStoppedError(RuntimeError):
    """A run stopped itself (a NaN loss, or a penalty or loss that ran away); its last
    good backup is kept, and running the same command again resumes from it."""


class NonFiniteLossError(TrainingStoppedError):
    """A loss became NaN or infinite; the run stopped and kept its last good backup."""


class DivergenceError(TrainingStoppedError):
    """The penalty or an adversarial loss ran past its limit (`training.stop_*`);
    the run stopped and kept its last good backup."""


def training_step(model):
    """The steps `model` has trained: a `TagGAN`'s `step`, else its optimizer's iterations."""
    step = getattr(model, "step", None)
    if step is None:
        step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    return step


class RunMonitor(keras.callbacks.Callback):
    """Writes a run's logs, sample grids, backups and exports at their intervals.

    Args:
        run_dir: the run folder (`logs/`, `samples/`, `backup/` and the `.keras` files).
        total_steps: the step the run ends at.
        log_every: steps between logged losses (the steps of one Keras epoch).
        image_every: steps between sample grids.
        backup_every: steps between resume backups.
        export_every: steps between `.keras` exports.
        grid_inputs: `(z, tags, rows, cols)`: fixed noise and tags of the sample grid.
        meta: extra keys stored in each backup.
        batch_size: images per step, for the logged `perf/images_per_s`.
        limits: `{logged name: limit}`; an interval whose mean passes its limit
            stops the run without a backup, as a NaN does (the divergence guard).
            A None limit is no limit.
    """

    def __init__(self, run_dir, total_steps, log_every, image_every, backup_every,
                 export_every, grid_inputs, meta=None, batch_size=None,
                 limits=None):  # fmt: skip
        super().__init__()
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.log_every = log_every
        self.image_every = image_every
        self.backup_every = backup_every
        self.export_every = export_every
        self.grid_z, self.grid_tags, self.grid_rows, self.grid_cols = grid_inputs
        self.meta = meta or {}
        self.batch_size = batch_size
        self.interval_start = time.perf_counter()
        self.limits = {k: v for k, v in (limits or {}).items() if v is not None}
        self.failure = None
        self.divergence = None
        self.last_backup_step = None
        os.makedirs(self.path("logs"), exist_ok=True)
        self.writer = SummaryWriter(self.path("logs"))

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)

    def on_epoch_begin(self, epoch, logs=None):
        self.interval_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        step = self.model.step
        values = {k: float(v) for k, v in (logs or {}).items()}
        # Reading the losses above waits for the interval's last step to finish.
        seconds = (time.perf_counter() - self.interval_start) / self.log_every
        values["perf/seconds_per_step"] = seconds
        values["perf/images_per_s"] = self.batch_size / seconds if self.batch_size else 0.0
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            self.failure = (step, bad)
            self.model.stop_training = True
            return
        lr = self.model.g_optimizer.learning_rate
        values["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        append_metrics(self.run_dir, step, values)
        self.writer.scalars(values, step)
        over = {k: (values[k], v) for k, v in self.limits.items() if values.get(k, 0.0) > v}
        if over:  # logged, so the curve shows it, but neither backed up nor exported
            self.divergence = (step, over)
            self.model.stop_training = True
            return
        final = step >= self.total_steps
        if final or step % self.image_every == 0:
            self.write_samples(step)
        if final or step % self.backup_every == 0:
            self.backup()
        if final or step % self.export_every == 0:
            self.export()

    def write_samples(self, step):
        images = distribute.predict(self.model.ema_generator, [self.grid_z, self.grid_tags])
        grid = image_grid(to_uint8(images), self.grid_rows, self.grid_cols)
        save_png(self.path("samples", f"step-{step:07d}.png"), grid)
        self.writer.image("samples/ema", grid, step)

    def backup(self):
        info = save_state(self.model, self.path("backup", "state.npz"), **self.meta)
        self.last_backup_step = info["step"]

    def export(self):
        save_model_atomic(self.model.ema_generator, self.path("generator.keras"))
        save_model_atomic(self.model.discriminator, self.path("discriminator.keras"))


class TaggerMonitor(keras.callbacks.Callback):
    """Writes the logs and backups of a single-optimizer model's run (the tagger).

    At the end of each Keras epoch it appends the epoch's losses (and the learning
    rate) to `logs/metrics.jsonl` and TensorBoard, and every `backup_every` steps,
    and at the last step, writes `backup/state.npz`: the model's weights and its
    optimizer's variables (see `kanime.training.checkpoint.model_state_variables`).
    A NaN or infinite loss stops training without a backup (see `finite_or_raise`).

    Args:
        run_dir: the run folder (`logs/` and `backup/` go in it).
        total_steps: the step the run ends at.
        backup_every: steps between backups.
        meta: extra keys stored in each backup.
    """

    def __init__(self, run_dir, total_steps, backup_every, meta=None):
        super().__init__()
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.backup_every = backup_every
        self.meta = meta or {}
        self.failure = None
        self.last_backup_step = None
        os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
        self.writer = SummaryWriter(os.path.join(run_dir, "logs"))

    def on_epoch_end(self, epoch, logs=None):
        step = training_step(self.model)
        values = {k: float(v) for k, v in (logs or {}).items()}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            self.failure = (step, bad)
            self.model.stop_training = True
            return
        lr = self.model.optimizer.learning_rate
        values["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        append_metrics(self.run_dir, step, values)
        self.writer.scalars(values, step)
        if step >= self.total_steps or step % self.backup_every == 0:
            self.backup()

    def backup(self):
        path = os.path.join(self.run_dir, "backup", "state.npz")
        step = training_step(self.model)
        save_variables(model_state_variables(self.model), path, step, **self.meta)
        self.last_backup_step = step


class ProgressBar(keras.callbacks.Callback):
    """A rich progress bar over training steps, with the latest losses."""

    def __init__(self, total_steps, initial_step=0, enabled=True,
                 shown=("d_loss", "g_loss", "gp", "g_tag_loss")):  # fmt: skip
        super().__init__()
        self.total_steps = total_steps
        self.initial_step = initial_step
        self.enabled = enabled
        self.shown = shown
        self.progress = None

    def on_train_begin(self, logs=None):
        if not self.enabled:
            return
        from kanime.progress import progress_bar

        self.progress = progress_bar("[bold]training", after=["{task.fields[losses]}"])
        self.progress.start()
        self.task = self.progress.add_task(
            "fit", total=self.total_steps, completed=self.initial_step, losses=""
        )

    def on_train_batch_end(self, batch, logs=None):
        if self.progress is not None:
            self.progress.advance(self.task)

    def on_epoch_end(self, epoch, logs=None):
        if self.progress is None or not logs:
            return
        text = " ".join(f"{k}={float(logs[k]):.3f}" for k in self.shown if k in logs)
        self.progress.update(self.task, completed=training_step(self.model), losses=text)

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


GAN_NAN_HINT = "Lower training.learning_rate or raise training.lambda_gp if it happens again."


GAN_DIVERGENCE_HINT = (
    "A penalty or loss that runs away means one network has overpowered the other: "
    "lower training.learning_rate (or training.d_learning_rate), raise training.lambda_gp, "
    "or add training.augment; the limits are training.stop_gp_above and "
    "training.stop_adv_loss_above."
)


def _kept(monitor):
    if monitor.last_backup_step is None:
        return "no backup had been written yet"
    return f"the last good backup (step {monitor.last_backup_step}) is kept"


def finite_or_raise(monitor, run_dir, hint=GAN_NAN_HINT):
    """Raises `NonFiniteLossError` when `monitor` saw a NaN or infinite loss, and
    `DivergenceError` when a logged value passed its limit (see `RunMonitor`)."""
    if getattr(monitor, "divergence", None) is not None:
        step, over = monitor.divergence
        names = ", ".join(f"{k}={v:.4g} (limit {limit:g})" for k, (v, limit) in over.items())
        raise DivergenceError(
            f"Training stopped at step {step}: {names} ran away. In {run_dir}, "
            f"{_kept(monitor)}; running the same command again resumes from it. "
            f"{GAN_DIVERGENCE_HINT}"
        )
    if monitor.failure is None:
        return
    step, bad = monitor.failure
    kept = _kept(monitor)
    names = ", ".join(f"{k}={v}" for k, v in bad.items())
    raise NonFiniteLossError(
        f"Training stopped at step {step}: {names}. In {run_dir}, {kept}; running the same "
        f"command again resumes from it. {hint}"
    )
