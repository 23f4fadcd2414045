import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import ROOT, interrupt_after_epoch, write_recipe

from kanime.models.export import read_metadata
from kanime.recipe import RecipeError, load_recipe
from kanime.run.callbacks import NonFiniteLossError
from kanime.run.checkpoint import CheckpointError, load_state, read_meta, save_state
from kanime.tags import PAPER_TAGS, TagVocabulary
from kanime.training.fit import build_gan, fit


def metrics(run_dir):
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def event_steps(run_dir, tag):
    """The steps of `tag`'s TensorBoard events, over all the run's event files."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    steps = []
    for path in sorted((run_dir / "logs").glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_short_fit_writes_a_complete_run(tmp_path, tiny_recipe):
    run = tmp_path / "run"
    result = fit(tiny_recipe, run_dir=run, progress=False)
    assert result.step == 8 and result.resumed_from == 0
    for name in ("recipe.yaml", "generator.keras", "discriminator.keras",
                 "backup/state.weights.h5"):  # fmt: skip
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step-0000004.png",
        "step-0000008.png",
    ]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "logs").iterdir())
    rows = metrics(run)
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in rows)
    assert yaml.safe_load((run / "recipe.yaml").read_text())["training"]["steps"] == 8
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 8
    # The exported generator names its tags itself: no recipe.yaml needed beside it.
    stored = read_metadata(run / "generator.keras")["vocabulary"]
    assert TagVocabulary.from_config(stored) == PAPER_TAGS
    # No temporary file is left behind by the atomic writes.
    assert not [p for p in run.rglob(".*") if p.is_file()]


def test_finished_run_resumes_with_more_steps_from_its_step(tmp_path, tiny_recipe):
    run = tmp_path / "run"
    fit(tiny_recipe, run_dir=run, progress=False)
    again = fit(tiny_recipe, run_dir=run, progress=False)
    assert again.step == 8 and again.resumed_from == 8
    more = fit(tiny_recipe, run_dir=run, overrides=["training.steps=12"], progress=False)
    assert more.resumed_from == 8 and more.step == 12
    assert [r["step"] for r in metrics(run)] == [2, 4, 6, 8, 10, 12]


@pytest.mark.large
def test_killed_run_continues_from_its_last_backup(tmp_path):
    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        training={"batch_size": 8, "steps": 400, "ema_half_life_images": 64},
        logging={"log_every": 2, "image_every": 400, "backup_every": 2, "export_every": 400},
    )
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "kanime.cli", "fit", str(recipe), "--run-dir", str(run),
               "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    backup = run / "backup" / "state.weights.h5"
    deadline = time.time() + 300
    while time.time() < deadline and not (backup.exists() and read_meta(backup)["step"] >= 6):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_meta(backup)["step"]
    assert 6 <= killed_at < 400

    result = fit(recipe, run_dir=run, overrides=["training.steps=" + str(killed_at + 4)],
                 progress=False)  # fmt: skip
    assert result.resumed_from == killed_at
    assert result.step == killed_at + 4
    steps = [r["step"] for r in metrics(run)]
    assert steps[-2:] == [killed_at + 2, killed_at + 4]
    assert read_meta(backup)["step"] == killed_at + 4


def test_an_interrupted_run_logs_each_step_once_after_resuming(tmp_path, monkeypatch):
    from kanime.run.callbacks import RunMonitor

    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        logging={"log_every": 2, "image_every": 8, "backup_every": 4, "export_every": 8},
    )
    # Step 6 (epoch 2) is logged, while the last backup is at step 4.
    logged = interrupt_after_epoch(monkeypatch, RunMonitor, 2)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(recipe, run_dir=run, progress=False)
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 4
    assert [r["step"] for r in metrics(run)] == [2, 4, 6]
    assert event_steps(run, "d_loss") == [2, 4, 6]

    monkeypatch.setattr(RunMonitor, "on_epoch_end", logged)
    result = fit(recipe, run_dir=run, progress=False)
    assert result.resumed_from == 4 and result.step == 8
    rows = metrics(run)
    assert [r["step"] for r in rows] == [2, 4, 6, 8]  # step 6 once: the resumed run's row
    assert all(np.isfinite(r["d_loss"]) for r in rows)
    # TensorBoard too: step 6 once, and the killed run's events up to its backup kept.
    assert event_steps(run, "d_loss") == [2, 4, 6, 8]
    assert event_steps(run, "samples/ema") == [8]


def fresh_gan(recipe_path, overrides=()):
    return build_gan(load_recipe(recipe_path, overrides))


def trained_gan(recipe_path, steps=2):
    """The tiny recipe's GAN after `steps` steps on random images."""
    recipe = load_recipe(recipe_path)
    gan = build_gan(recipe)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8 * steps, 32, 32, 3)).astype("float32")
    gan.fit(images, recipe.vocabulary.sample(8 * steps, rng), batch_size=8, verbose=0)
    return gan


def test_a_backup_round_trips_every_variable_and_the_step(tmp_path, tiny_recipe):
    gan = trained_gan(tiny_recipe)
    path = tmp_path / "state.weights.h5"
    assert save_state(gan, path, gan.step, recipe="tiny") == {"step": 2, "recipe": "tiny"}
    fresh = fresh_gan(tiny_recipe)
    assert fresh.step == 0
    assert not np.array_equal(fresh.seed_generator.state, gan.seed_generator.state)
    assert load_state(fresh, path) == {"step": 2, "recipe": "tiny"}
    assert fresh.step == 2
    for optimizer in (fresh.g_optimizer, fresh.d_optimizer):
        assert int(np.asarray(optimizer.iterations)) == 2
    # Models, EMA, both optimizers' moments and the random seed: every value, bit for bit.
    for saved, loaded in zip(gan.state_variables(), fresh.state_variables(), strict=True):
        assert saved.path == loaded.path
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(saved), err_msg=saved.path)

    other = fresh_gan(tiny_recipe, ["model.generator.channels=16"])
    with pytest.raises(CheckpointError, match="different model configuration.*new run dir"):
        load_state(other, path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "state.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"old/state.npz is a backup of an older kanime"):
        load_state(fresh, tmp_path / "old" / "state.weights.h5")


def test_a_save_killed_midway_keeps_the_previous_backup(tmp_path, tiny_recipe, monkeypatch):
    import keras

    gan = trained_gan(tiny_recipe)
    path = tmp_path / "backup" / "state.weights.h5"
    save_state(gan, path, gan.step)
    written = path.read_bytes()

    def killed(self, filepath, **kwargs):  # half a file, then the process dies
        with open(filepath, "wb") as f:
            f.write(written[: len(written) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save_weights", killed)
    with pytest.raises(KeyboardInterrupt):
        save_state(gan, path, 4)
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert path.read_bytes() == written and read_meta(path)["step"] == 2
    fresh = fresh_gan(tiny_recipe)
    load_state(fresh, path)
    assert fresh.step == 2


def test_nan_loss_stops_the_run_and_keeps_the_last_good_backup(tmp_path, tiny_recipe, monkeypatch):
    from kanime.data.batches import ArrayBatches

    clean = ArrayBatches.batch

    def poisoned(self, position):
        images, tags = clean(self, position)
        if position >= 4:
            images = images * np.nan
        return images, tags

    monkeypatch.setattr(ArrayBatches, "batch", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"step 6.*last good backup \(step 4\)"):
        fit(tiny_recipe, run_dir=run, progress=False)
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 4
    saved = fresh_gan(tiny_recipe)
    load_state(saved, run / "backup" / "state.weights.h5")
    assert all(np.all(np.isfinite(v)) for v in saved.state_variables())

    monkeypatch.setattr(ArrayBatches, "batch", clean)
    result = fit(tiny_recipe, run_dir=run, progress=False)
    assert result.resumed_from == 4 and result.step == 8


def test_recipe_errors_at_fit_time(tmp_path):
    missing = write_recipe(tmp_path / "a.yaml", data={"source": "tfrecord", "path": "nowhere/x"})
    with pytest.raises(RecipeError, match="kanime prepare"):
        fit(missing, run_dir=tmp_path / "a", progress=False)
    uneven = write_recipe(tmp_path / "b.yaml", logging={"log_every": 3})
    with pytest.raises(RecipeError, match="multiple of logging.log_every"):
        fit(uneven, run_dir=tmp_path / "b", progress=False)


def test_a_run_directory_refuses_a_different_model(tmp_path, tiny_recipe):
    run = tmp_path / "run"
    fit(tiny_recipe, run_dir=run, progress=False)
    with pytest.raises(RecipeError, match="different model"):
        fit(tiny_recipe, run_dir=run, overrides=["model.generator.channels=16"], progress=False)


def test_getchu_recipe_points_at_prepare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError, match="kanime prepare"):
        fit(ROOT / "recipes" / "getchu.yaml", progress=False)


def test_fit_reads_prepared_tfrecords(tmp_path):
    import cv2

    from kanime.data.procedural import make_faces
    from kanime.data.tfrecords import ShardWriter, encode_example

    images, tags = make_faces(40, 32, seed=0)
    with ShardWriter(tmp_path / "faces", shard_size=16) as writer:
        for i, (image, tag) in enumerate(zip(images, tags)):
            ok, jpeg = cv2.imencode(".jpg", image[..., ::-1])
            writer.write(encode_example(f"f{i}", jpeg.tobytes(), tag, 1, f"face{i}.png"))
    recipe = write_recipe(
        tmp_path / "r.yaml", data={"source": "tfrecord", "path": str(tmp_path / "faces")}
    )
    result = fit(recipe, run_dir=tmp_path / "run", overrides=["training.steps=4"], progress=False)
    assert result.step == 4
    assert all(np.isfinite(r["d_loss"]) for r in metrics(tmp_path / "run"))


def test_dropping_events_keeps_the_whole_records_of_a_file_cut_short(tmp_path):
    import tensorflow as tf

    from kanime.run.metrics_log import drop_events_after

    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    with writer.as_default():
        for step in (2, 4, 6, 8):
            tf.summary.scalar("d_loss", 1.0 / step, step=step)
    writer.close()
    (path,) = (tmp_path / "logs").glob("events.out.tfevents.*")
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # the step-8 record, cut short as by a killed process
    drop_events_after(tmp_path, 4)
    assert event_steps(tmp_path, "d_loss") == [2, 4]
    drop_events_after(tmp_path, 4)  # nothing past 4 is left: the file stays as it is
    assert event_steps(tmp_path, "d_loss") == [2, 4]


def test_a_penalty_that_runs_away_stops_the_run_and_keeps_the_last_good_backup(tmp_path):
    from kanime.run.callbacks import DivergenceError

    # Any penalty passes a limit this low: the guard must stop at the first log.
    recipe = write_recipe(
        tmp_path / "r.yaml", training={"stop_gp_above": 1e-12, "stop_adv_loss_above": None}
    )
    run = tmp_path / "run"
    with pytest.raises(DivergenceError, match=r"step 2: gp=.*limit 1e-12.*ran away"):
        fit(recipe, run_dir=run, progress=False)
    assert not (run / "backup" / "state.weights.h5").exists()
    assert metrics(run)[-1]["step"] == 2  # the runaway interval is logged, for the curves

    recipe = write_recipe(tmp_path / "r.yaml", training={"stop_gp_above": None})
    result = fit(recipe, run_dir=run, progress=False)
    assert result.resumed_from == 0 and result.step == 8


def test_each_network_gets_its_own_learning_rate(tmp_path):
    from kanime.recipe import load_recipe
    from kanime.training.fit import build_gan

    recipe = load_recipe(write_recipe(tmp_path / "r.yaml"), ["training.d_learning_rate=4e-4"])
    gan = build_gan(recipe)
    lr = [float(np.asarray(o.learning_rate)) for o in (gan.g_optimizer, gan.d_optimizer)]
    assert lr == pytest.approx([2e-4, 4e-4])


def test_every_issue_14_option_trains_and_exports(tmp_path):
    import keras

    recipe = write_recipe(
        tmp_path / "r.yaml",
        model={"generator": {"channels": 8, "num_blocks": 1, "upsample_channels": 16,
                             "upsample_init": "icnr"}},
        training={"tag_loss": "grouped", "penalty": "r1", "lambda_gp": 5.0, "lambda_tag": 3.0,
                  "augment": "translation+cutout", "d_learning_rate": 4e-4},
    )  # fmt: skip
    run = tmp_path / "run"
    result = fit(recipe, run_dir=run, progress=False)
    assert result.step == 8
    rows = metrics(run)
    assert all(np.isfinite(r["d_real_logit"]) and np.isfinite(r["d_fake_logit"]) for r in rows)
    gen = keras.saving.load_model(run / "generator.keras")
    assert gen.output_shape[1:] == (32, 32, 3)


def test_steps_are_counted_by_the_trainer_through_overflow_skipped_steps(tmp_path, monkeypatch):
    import keras

    scaled = []

    class OverflowingAtFirst(keras.optimizers.LossScaleOptimizer):
        """A loss scale of 2**40 overflows float16: the first steps are skipped."""

        def __init__(self, inner_optimizer, **kwargs):
            super().__init__(inner_optimizer, initial_scale=2.0**40, **kwargs)
            scaled.append(self)

    monkeypatch.setattr(keras.optimizers, "LossScaleOptimizer", OverflowingAtFirst)
    logging = {"log_every": 2, "image_every": 4, "backup_every": 4, "export_every": 4}
    recipe = write_recipe(
        tmp_path / "fp16.yaml", training={"steps": 8, "mixed_precision": "mixed_float16"},
        logging=logging,
    )  # fmt: skip
    run = tmp_path / "run"
    try:
        result = fit(recipe, run_dir=run, progress=False)
        g_optimizer = scaled[0]
        applied = int(keras.ops.convert_to_numpy(g_optimizer.iterations))
        assert applied < 8, "the test needs skipped steps"
        assert result.step == 8
        assert [r["step"] for r in metrics(run)] == [2, 4, 6, 8]
        assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
            "step-0000004.png", "step-0000008.png",
        ]  # fmt: skip
        assert read_meta(run / "backup" / "state.weights.h5")["step"] == 8

        longer = write_recipe(
            tmp_path / "fp16.yaml", training={"steps": 12, "mixed_precision": "mixed_float16"},
            logging=logging,
        )  # fmt: skip
        resumed = fit(longer, run_dir=run, progress=False)
        assert (resumed.resumed_from, resumed.step) == (8, 12)
        assert [r["step"] for r in metrics(run)] == [2, 4, 6, 8, 10, 12]
    finally:
        keras.config.set_dtype_policy("float32")
