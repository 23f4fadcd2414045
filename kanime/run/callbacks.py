"""Callbacks every run shares: logs, backups, the NaN and divergence guard, a progress bar.

They act at the end of a Keras epoch, which `kanime.training.fit` (and the tagger's
`fit_tagger`) sets to `logging.log_every` steps: on JAX that is when Keras writes
the jitted state back into the variables, so reading weights there costs nothing extra.
"""

import math
import os
import warnings

import keras

from kanime.progress import progress_bar
from kanime.run.checkpoint import save_state
from kanime.run.layout import RunFolder
from kanime.run.metrics_log import append_metrics


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
    """Logs a run at the end of each Keras epoch, guards it, and backs it up.

    At the end of each Keras epoch (`logging.log_every` steps) it appends the epoch's
    values and the learning rate to `logs/metrics.jsonl` and TensorBoard, and every
    `backup_every` steps, and at the last step, writes `backup/state.weights.h5`. A NaN or
    infinite value stops training without a backup; so does an interval whose value
    passes its limit (the divergence guard), after it is logged so the curve shows it.
    `finite_or_raise` then turns either into an error. The GAN's monitor
    (`kanime.training.monitor.GANMonitor`) adds sample grids and exports.

    Args:
        run_dir: the run folder (see `kanime.run.layout.RunFolder`).
        total_steps: the step the run ends at.
        backup_every: steps between backups.
        meta: extra keys stored in each backup.
        limits: `{logged name: limit}`; None, or a None limit, is no limit.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from kanime.run.metrics_log import read_metrics
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> run = tempfile.mkdtemp()
        >>> monitor = RunMonitor(run, total_steps=4, backup_every=2)
        >>> _ = model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=4, epochs=2,
        ...               callbacks=[monitor], verbose=0)
        >>> monitor.last_backup_step, len(read_metrics(run))
        (4, 2)
    """

    def __init__(self, run_dir, total_steps, backup_every, meta=None, limits=None):
        super().__init__()
        self.run = RunFolder(run_dir)
        self.total_steps = total_steps
        self.backup_every = backup_every
        self.meta = meta or {}
        self.limits = {k: v for k, v in (limits or {}).items() if v is not None}
        self.failure = None
        self.divergence = None
        self.last_backup_step = None
        os.makedirs(self.run.logs, exist_ok=True)
        self.writer = SummaryWriter(str(self.run.logs))

    def on_epoch_end(self, epoch, logs=None):
        step = training_step(self.model)
        values = self.logged_values(logs)
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            self.failure = (step, bad)
            self.model.stop_training = True
            return
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.learning_rate()))
        append_metrics(self.run.root, step, values)
        self.writer.scalars(values, step)
        over = {k: (values[k], v) for k, v in self.limits.items() if values.get(k, 0.0) > v}
        if over:  # logged, so the curve shows it, but neither backed up nor exported
            self.divergence = (step, over)
            self.model.stop_training = True
            return
        self.at_interval(step, final=step >= self.total_steps)

    def logged_values(self, logs):
        """The values to log for this interval (Keras's epoch logs)."""
        return {k: float(v) for k, v in (logs or {}).items()}

    def learning_rate(self):
        return self.model.optimizer.learning_rate

    def at_interval(self, step, final):
        """What a good interval writes besides its logs: here the backup, when due."""
        if final or step % self.backup_every == 0:
            self.backup()

    def backup(self):
        step = training_step(self.model)
        save_state(self.model, self.run.backup, step, **self.meta)
        self.last_backup_step = step


class ProgressBar(keras.callbacks.Callback):
    """A rich progress bar over training steps, with the latest losses."""

    def __init__(self, total_steps, initial_step=0, enabled=True,
                 shown=None):  # fmt: skip
        super().__init__()
        self.total_steps = total_steps
        self.initial_step = initial_step
        self.enabled = enabled
        self.shown = shown or ("d_loss", "g_loss", "gp", "g_tag_loss")  # the GAN's losses
        self.progress = None

    def on_train_begin(self, logs=None):
        if not self.enabled:
            return
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


def _kept(monitor):
    if monitor.last_backup_step is None:
        return "no backup had been written yet"
    return f"the last good backup (step {monitor.last_backup_step}) is kept"


def finite_or_raise(monitor, run_dir, hint="", divergence_hint=""):
    """Raises `NonFiniteLossError` when `monitor` saw a NaN or infinite loss, and
    `DivergenceError` when a logged value passed its limit (see `RunMonitor`); each
    message ends with the job's `hint` or `divergence_hint`, what to change."""
    if getattr(monitor, "divergence", None) is not None:
        step, over = monitor.divergence
        names = ", ".join(f"{k}={v:.4g} (limit {limit:g})" for k, (v, limit) in over.items())
        raise DivergenceError(
            f"Training stopped at step {step}: {names} ran away. In {run_dir}, "
            f"{_kept(monitor)}; running the same command again resumes from it. "
            f"{divergence_hint}"
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


def fit_steps(model, data, monitor, total_steps, log_every, resumed_from, *, before=(),
              after=(), progress=True, shown=None, hint="", divergence_hint="",
              **fit_kwargs):  # fmt: skip
    """Trains `model` from step `resumed_from` to `total_steps`, watched by `monitor`.

    The one training loop of every run: Keras epochs of `log_every` steps (the monitor
    logs and backs up at their ends), a progress bar, the batches in the order `data`
    gives them, and at the end `finite_or_raise`.

    Args:
        model: a compiled Keras model (the GAN or the tagger).
        data: what `model.fit` takes (see `kanime.data.batches.ArrayBatches.for_fit`).
        monitor: the run's `RunMonitor`.
        total_steps: the step the run ends at.
        log_every: steps of one Keras epoch.
        resumed_from: the step the run starts from (a multiple of `log_every`).
        before: callbacks that run before `monitor` (they add values it logs).
        after: callbacks that run after the progress bar (e.g. the data's own).
        progress: show the progress bar.
        shown: the logged values the bar shows; default the GAN's losses.
        hint: what to change, ending a NaN error.
        divergence_hint: what to change, ending a divergence error.
        **fit_kwargs: more `model.fit` arguments (`validation_data`, ...).

    Raises:
        NonFiniteLossError: a logged value became NaN or infinite.
        DivergenceError: a logged value passed its limit in `monitor.limits`.
    """
    bar = ProgressBar(total_steps, resumed_from, enabled=progress, shown=shown)
    try:
        model.fit(
            data,
            steps_per_epoch=log_every,
            epochs=total_steps // log_every,
            initial_epoch=resumed_from // log_every,
            callbacks=[*before, monitor, bar, *after],
            shuffle=False,  # the batches are already shuffled, reproducibly
            verbose=0,
            **fit_kwargs,
        )
    finally:
        bar.close()
    finite_or_raise(monitor, monitor.run.root, hint, divergence_hint)
