"""The GAN run's monitor: `RunMonitor` plus timing, sample grids and exports."""

import time

from kanime.images import image_grid, save_png, to_uint8
from kanime.models.export import save_model_atomic
from kanime.run.callbacks import RunMonitor
from kanime.training import distribute

NAN_HINT = "Lower training.learning_rate or raise training.lambda_gp if it happens again."

DIVERGENCE_HINT = (
    "A penalty or loss that runs away means one network has overpowered the other: "
    "lower training.learning_rate (or training.d_learning_rate), raise training.lambda_gp, "
    "or add training.augment; the limits are training.stop_gp_above and "
    "training.stop_adv_loss_above."
)


class GANMonitor(RunMonitor):
    """Writes a GAN run's logs, sample grids, backups and exports at their intervals.

    Besides what `RunMonitor` does, it logs `perf/seconds_per_step` and
    `perf/images_per_s`, writes the EMA generator's grid of `grid_inputs` to
    `samples/` and TensorBoard, and exports `generator.keras` (the EMA generator)
    and `discriminator.keras`.

    Args:
        run_dir: the run folder (see `kanime.run.layout.RunFolder`).
        total_steps: the step the run ends at.
        log_every: steps between logged losses (the steps of one Keras epoch).
        image_every: steps between sample grids.
        backup_every: steps between resume backups.
        export_every: steps between `.keras` exports.
        grid_inputs: `(z, tags, rows, cols)`: fixed noise and tags of the sample grid.
        meta: extra keys stored in each backup.
        batch_size: images per step, for the logged `perf/images_per_s`.
        limits: `{logged name: limit}`, the divergence guard (see `RunMonitor`).

    Examples:
        `kanime.training.fit.fit` builds it from the recipe's `logging` section; a
        run is in `tests/test_fit.py`.
    """

    def __init__(self, run_dir, total_steps, log_every, image_every, backup_every,
                 export_every, grid_inputs, meta=None, batch_size=None,
                 limits=None):  # fmt: skip
        super().__init__(run_dir, total_steps, backup_every, meta=meta, limits=limits)
        self.log_every = log_every
        self.image_every = image_every
        self.export_every = export_every
        self.grid_z, self.grid_tags, self.grid_rows, self.grid_cols = grid_inputs
        self.batch_size = batch_size
        self.interval_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.interval_start = time.perf_counter()

    def logged_values(self, logs):
        values = super().logged_values(logs)
        # Reading the losses waits for the interval's last step to finish.
        seconds = (time.perf_counter() - self.interval_start) / self.log_every
        values["perf/seconds_per_step"] = seconds
        values["perf/images_per_s"] = self.batch_size / seconds if self.batch_size else 0.0
        return values

    def learning_rate(self):
        return self.model.g_optimizer.learning_rate

    def at_interval(self, step, final):
        if final or step % self.image_every == 0:
            self.write_samples(step)
        super().at_interval(step, final)
        if final or step % self.export_every == 0:
            self.export()

    def write_samples(self, step):
        images = distribute.predict(self.model.ema_generator, [self.grid_z, self.grid_tags])
        grid = image_grid(to_uint8(images), self.grid_rows, self.grid_cols)
        save_png(self.run.sample(step), grid)
        self.writer.image("samples/ema", grid, step)

    def export(self):
        # The generator carries its tag vocabulary: it loads without the recipe beside it.
        metadata = {"vocabulary": self.model.vocabulary.get_config()}
        save_model_atomic(self.model.ema_generator, self.run.generator, metadata=metadata)
        save_model_atomic(self.model.discriminator, self.run.discriminator)


__all__ = ["DIVERGENCE_HINT", "GANMonitor", "NAN_HINT"]
