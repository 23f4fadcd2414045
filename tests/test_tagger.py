import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import ROOT, interrupt_after_epoch
from typer.testing import CliRunner

from kanime.cli import app
from kanime.recipe import Recipe, RecipeError, TaggerRecipe, load_recipe, recipe_from_dict
from kanime.run.callbacks import NonFiniteLossError
from kanime.run.checkpoint import read_meta
from kanime.tagger import build_tagger, fit_tagger
from kanime.tagger.fit import precision_recall
from kanime.tags import PAPER_TAGS

runner = CliRunner()

TINY_TAGGER = {
    "name": "tiny-tagger",
    "seed": 1,
    "data": {"num_images": 160, "holdout": 32},
    "model": {"resolution": 32, "channels": 4},
    "training": {"batch_size": 16, "steps": 8},
    "logging": {"log_every": 2, "backup_every": 4},
}


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tiny-tagger.yaml"
    path.write_text(yaml.safe_dump(TINY_TAGGER))
    return path


@pytest.fixture(scope="module")
def finished(tiny_tagger, tmp_path_factory):
    """A finished 8-step run of the tiny tagger recipe; copy it before changing it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    result = fit_tagger(tiny_tagger, run_dir=run, progress=False)
    return run, result


def copy_run(run, tmp_path):
    return Path(shutil.copytree(run, tmp_path / "run"))


def metrics(run_dir):
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_precision_recall_counts():
    truth = np.zeros((4, 34))
    truth[:2, 0] = 1  # two blonde faces
    predicted = np.zeros((4, 34))
    predicted[[0, 2], 0] = 1  # one right, one wrong
    rows = precision_recall(predicted, truth)
    assert rows["blonde hair"] == {"precision": 0.5, "recall": 0.5, "support": 2, "predicted": 2}
    assert rows["glasses"]["precision"] is None and rows["glasses"]["recall"] is None


def test_tagger_shapes_and_score_range():
    tagger = build_tagger(32, channels=4)
    scores = tagger.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert scores.shape == (2, 34) and np.all((scores >= 0) & (scores <= 1))
    assert tagger.get_layer("features").output.shape[-1] == 256


# --- the recipe -----------------------------------------------------------------


def test_shipped_tagger_recipes_validate():
    getchu = load_recipe(ROOT / "recipes" / "tagger.yaml", recipe_type=TaggerRecipe)
    assert getchu.data.source == "tfrecord" and getchu.data.path == "data/getchu"
    assert getchu.model.resolution == 64 and getchu.name == "tagger"
    quick = load_recipe(ROOT / "recipes" / "tagger-quickstart.yaml", recipe_type=TaggerRecipe)
    assert quick.data.source == "procedural" and quick.model.resolution == 32
    assert recipe_from_dict(quick.to_dict(), recipe_type=TaggerRecipe) == quick
    assert recipe_from_dict({}, recipe_type=TaggerRecipe) == TaggerRecipe()


def test_a_recipe_of_the_other_kind_names_its_command():
    with pytest.raises(RecipeError, match="kanime fit-tagger"):
        load_recipe(ROOT / "recipes" / "tagger-quickstart.yaml")
    with pytest.raises(RecipeError, match="GAN recipe: train it with `kanime fit`"):
        load_recipe(ROOT / "recipes" / "quickstart.yaml", recipe_type=TaggerRecipe)


@pytest.mark.parametrize(
    "mapping, fragments",
    [
        ({"model": {"latent_dim": 8}}, ["unknown key `model.latent_dim`", "channels"]),
        ({"training": {"batchsize": 8}}, ["`training.batchsize`", "training.batch_size"]),
        ({"data": {"holdout": 1.5}}, ["`data.holdout`", "fraction in (0, 1)", "1.5"]),
        ({"data": {"holdout": 0}}, ["`data.holdout`", "count of faces >= 1"]),
        ({"data": {"holdout": "some"}}, ["`data.holdout`", "an integer or a finite number"]),
        ({"data": {"source": "folder"}}, ["`data.source`", "'procedural'", "'tfrecord'"]),
        ({"data": {"source": "tfrecord"}}, ["`data.path`", "required"]),
        ({"model": {"resolution": 40}}, ["`model.resolution`", "multiple of 16", "40"]),
        ({"model": {"channels": 0}}, ["`model.channels`", ">= 1"]),
        ({"threshold": 1.5}, ["`threshold`", "(0, 1)", "1.5"]),
        ({"training": {"learning_rate": 0}}, ["`training.learning_rate`", "> 0"]),
        ({"training": {"steps": 150}}, ["`training.steps`", "multiple of `logging.log_every`"]),
        ({"logging": {"backup_every": 250}}, ["`logging.backup_every`", "(100)", "250"]),
    ],
)
def test_bad_keys_and_values_name_the_key(mapping, fragments):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(mapping, source="t.yaml", recipe_type=TaggerRecipe)
    for fragment in ("t.yaml", *fragments):
        assert fragment in str(info.value), str(info.value)


def test_holdout_is_a_fraction_or_a_count_and_threshold_may_be_null(tiny_tagger):
    recipe = load_recipe(tiny_tagger, ["data.holdout=0.25", "threshold=null"], TaggerRecipe)
    assert recipe.data.holdout == 0.25 and recipe.threshold is None
    assert load_recipe(tiny_tagger, recipe_type=TaggerRecipe).data.holdout == 32
    with pytest.raises(RecipeError, match="--set.*`data.holdout`"):
        load_recipe(tiny_tagger, ["data.holdout=true"], TaggerRecipe)


# --- runs -------------------------------------------------------------------------


def test_short_run_writes_a_complete_run_dir(tiny_tagger, finished):
    run, result = finished
    assert result.step == 8 and result.resumed_from == 0
    for name in ("recipe.yaml", "tagger.keras", "settings.json", "evaluation.json",
                 "backup/state.weights.h5", "logs/metrics.jsonl"):  # fmt: skip
        assert (run / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "logs").iterdir())
    rows = metrics(run)
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert load_recipe(run / "recipe.yaml", recipe_type=TaggerRecipe) == load_recipe(
        tiny_tagger, recipe_type=TaggerRecipe
    )
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 8

    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation == json.loads(json.dumps(result.evaluation))
    assert evaluation["held_out"] == 32 and evaluation["trained_on"] == 128
    assert evaluation["steps"] == 8 and evaluation["threshold"] == 0.5
    assert evaluation["final_loss"] == rows[-1]["loss"]
    assert set(evaluation["per_tag"]["blonde hair"]) == {"precision", "recall", "support",
                                                         "predicted"}  # fmt: skip
    assert sum(row["support"] for row in evaluation["per_tag"].values()) > 32

    settings = json.loads((run / "settings.json").read_text())
    assert settings["image_size"] == 32 and settings["tags"] == list(PAPER_TAGS.names)
    tagger = keras.saving.load_model(run / "tagger.keras")
    assert tagger.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 34)
    assert not [p for p in run.rglob(".*") if p.is_file()]  # no temporary file left


def test_finished_run_is_not_trained_again(tmp_path, tiny_tagger, finished):
    run = copy_run(finished[0], tmp_path)
    backup = (run / "backup" / "state.weights.h5").read_bytes()
    logged = (run / "logs" / "metrics.jsonl").read_text()
    again = fit_tagger(tiny_tagger, run_dir=run, progress=False)
    assert again.step == 8 and again.resumed_from == 8
    # A new threshold re-evaluates the held-out faces; it does not train.
    lower = fit_tagger(tiny_tagger, run_dir=run, overrides=["threshold=0.3"], progress=False)
    assert lower.resumed_from == 8 and lower.evaluation["threshold"] == 0.3
    assert json.loads((run / "evaluation.json").read_text())["threshold"] == 0.3
    assert (run / "backup" / "state.weights.h5").read_bytes() == backup
    assert (run / "logs" / "metrics.jsonl").read_text() == logged


def test_more_steps_continue_from_the_finished_step(tmp_path, tiny_tagger, finished):
    run = copy_run(finished[0], tmp_path)
    more = fit_tagger(tiny_tagger, run_dir=run, overrides=["training.steps=12"], progress=False)
    assert more.resumed_from == 8 and more.step == 12
    assert [r["step"] for r in metrics(run)] == [2, 4, 6, 8, 10, 12]
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 12
    assert more.evaluation["steps"] == 12


def test_interrupted_run_resumes_from_its_backup_step(tmp_path, tiny_tagger, finished,
                                                      monkeypatch):  # fmt: skip
    from kanime.run.callbacks import RunMonitor

    # Step 6 (epoch 2) is logged, while the last backup is at step 4.
    logged = interrupt_after_epoch(monkeypatch, RunMonitor, 2)
    run = tmp_path / "run"
    args = ["fit-tagger", str(tiny_tagger), "--run-dir", str(run), "--no-progress"]
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 130, stopped.output
    assert "resume from step 4" in stopped.output
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 4
    assert [r["step"] for r in metrics(run)] == [2, 4, 6]
    assert not (run / "tagger.keras").exists()

    monkeypatch.setattr(RunMonitor, "on_epoch_end", logged)
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert "Trained to step 8 (resumed from step 4)" in resumed.output
    assert [r["step"] for r in metrics(run)] == [2, 4, 6, 8]  # step 6 is logged once
    assert (run / "tagger.keras").is_file() and (run / "evaluation.json").is_file()
    # The resumed run trained as the uninterrupted one did: same batches, same state.
    resumed = [r["loss"] for r in metrics(run)]
    np.testing.assert_allclose(resumed, [r["loss"] for r in metrics(finished[0])], rtol=1e-4)


def test_a_run_dir_refuses_a_different_model_or_split(tmp_path, tiny_tagger, finished):
    run = finished[0]  # refused before anything is written
    with pytest.raises(RecipeError, match=r"different model \(changed: model\)"):
        fit_tagger(tiny_tagger, run_dir=run, overrides=["model.channels=8"], progress=False)
    with pytest.raises(RecipeError, match=r"different held-out split \(changed: seed, data.hold"):
        fit_tagger(tiny_tagger, run_dir=run, overrides=["seed=2", "data.holdout=0.2"],
                   progress=False)  # fmt: skip
    # A GAN run is not a tagger run.
    gan_run = tmp_path / "gan"
    (gan_run / "backup").mkdir(parents=True)
    (gan_run / "backup" / "state.weights.h5").write_bytes(b"")
    (gan_run / "recipe.yaml").write_text(yaml.safe_dump(Recipe().to_dict()))
    with pytest.raises(RecipeError, match="does not hold a tagger run"):
        fit_tagger(tiny_tagger, run_dir=gan_run, progress=False)


def test_too_few_faces_is_a_clear_error(tmp_path, tiny_tagger):
    with pytest.raises(RecipeError, match="at least 64"):
        fit_tagger(tiny_tagger, tmp_path, ["data.num_images=40", "training.batch_size=32"],
                   progress=False)  # fmt: skip
    with pytest.raises(RecipeError, match="data.holdout.*fewer than one batch"):
        fit_tagger(tiny_tagger, tmp_path, ["data.holdout=150"], progress=False)


def test_missing_dataset_points_at_prepare(tmp_path, tiny_tagger):
    overrides = ["data.source=tfrecord", f"data.path={tmp_path / 'nowhere'}"]
    with pytest.raises(RecipeError, match="kanime prepare"):
        fit_tagger(tiny_tagger, tmp_path / "run", overrides, progress=False)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_backup(tmp_path, tiny_tagger,
                                                               monkeypatch):  # fmt: skip
    from kanime.data.batches import ArrayBatches

    clean = ArrayBatches.batch

    def poisoned(self, position):
        # NaN tags, not NaN images: oneDNN's fused convolution + ReLU on CPUs
        # with AVX-512 maps NaN pixels to 0, so poisoned images give a finite loss.
        images, tags = clean(self, position)
        return images, (tags * np.nan if position >= 4 else tags)

    monkeypatch.setattr(ArrayBatches, "batch", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"step 6.*last good backup \(step 4\)"):
        fit_tagger(tiny_tagger, run_dir=run, progress=False)
    assert read_meta(run / "backup" / "state.weights.h5")["step"] == 4
    monkeypatch.setattr(ArrayBatches, "batch", clean)
    assert fit_tagger(tiny_tagger, run_dir=run, progress=False).resumed_from == 4


def test_tagger_reads_prepared_tfrecords(tmp_path, tiny_tagger):
    import cv2

    from kanime.data.procedural import make_faces
    from kanime.data.tfrecords import ShardWriter, encode_example

    images, tags = make_faces(48, 32, seed=0)
    with ShardWriter(tmp_path / "faces", shard_size=16) as writer:
        for i, (image, tag) in enumerate(zip(images, tags)):
            ok, jpeg = cv2.imencode(".jpg", image[..., ::-1])
            tagged = int(i < 40)  # untagged faces are not for the tagger
            writer.write(encode_example(f"f{i}", jpeg.tobytes(), tag, tagged, f"face{i}.png"))
    overrides = ["data.source=tfrecord", f"data.path={tmp_path / 'faces'}", "data.holdout=8",
                 "training.batch_size=8", "training.steps=4"]  # fmt: skip
    result = fit_tagger(tiny_tagger, tmp_path / "run", overrides, progress=False)
    assert result.step == 4
    assert result.evaluation["held_out"] == 8 and result.evaluation["trained_on"] == 32
    assert result.evaluation["data"] == str(tmp_path / "faces")


# --- the command line ---------------------------------------------------------------


def test_cli_dry_run_and_bad_override(tiny_tagger):
    dry = runner.invoke(app, ["fit-tagger", str(tiny_tagger), "--set", "training.steps=4",
                              "--dry-run"])  # fmt: skip
    assert dry.exit_code == 0, dry.output
    printed = yaml.safe_load(dry.output)
    assert printed["training"]["steps"] == 4 and printed["threshold"] == 0.5
    bad = runner.invoke(app, ["fit-tagger", str(tiny_tagger), "--set", "data.holdot=3"])
    assert bad.exit_code == 2 and "data.holdout" in bad.output
    gan = runner.invoke(app, ["fit-tagger", str(ROOT / "recipes" / "quickstart.yaml")])
    assert gan.exit_code == 2 and "kanime fit" in gan.output


def test_cli_trains_into_runs_name_and_prints_the_table(tmp_path, tiny_tagger, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit-tagger", str(tiny_tagger), "--no-progress", "--set", "training.steps=4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "tiny-tagger"
    assert (run / "tagger.keras").is_file()
    assert "held out: 32" in result.output and "blonde hair" in result.output
    assert "Trained to step 4." in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "nothing trained" in again.output


@pytest.mark.large
def test_quickstart_tagger_learns_procedural_faces_to_high_precision(tmp_path):
    result = fit_tagger(ROOT / "recipes" / "tagger-quickstart.yaml", tmp_path / "run",
                        progress=False)  # fmt: skip
    rows = result.evaluation["per_tag"]
    hair = [rows[name]["precision"] or 0.0 for name in PAPER_TAGS.names[:13]]
    styles = [rows[name]["precision"] or 0.0 for name in PAPER_TAGS.names[23:28]]
    assert np.mean(hair) > 0.9, hair
    assert np.mean(styles) > 0.8, styles
    assert result.evaluation["held_out"] == 200 and result.evaluation["trained_on"] == 1800


def test_balanced_loss_weights_rare_tags_and_trains(tmp_path, tiny_tagger):
    from kanime.tagger.fit import BalancedCrossentropy, build_tagger_for, positive_weights

    tags = np.zeros((10, 3), "float32")
    tags[0, 0] = 1  # 1 in 10: 9 negatives per positive
    tags[:5, 1] = 1  # balanced
    weights = positive_weights(tags, max_weight=5.0)
    assert weights.tolist() == [5.0, 1.0, 5.0]  # clipped; a tag never seen gets the cap

    # With all-ones weights it is Keras's binary cross-entropy.
    rng = np.random.default_rng(0)
    y_true = (rng.random((6, 3)) < 0.3).astype("float32")
    y_pred = rng.uniform(0.05, 0.95, (6, 3)).astype("float32")
    plain = keras.losses.BinaryCrossentropy()(y_true, y_pred)
    np.testing.assert_allclose(BalancedCrossentropy(3)(y_true, y_pred), plain, rtol=1e-5)

    recipe = load_recipe(tiny_tagger, ["training.loss=balanced"], recipe_type=TaggerRecipe)
    assert isinstance(build_tagger_for(recipe).loss, BalancedCrossentropy)
    result = fit_tagger(recipe, tmp_path / "run", progress=False)
    assert result.step == 8 and np.isfinite(result.evaluation["final_loss"])
    with pytest.raises(RecipeError, match="training.loss"):
        load_recipe(tiny_tagger, ["training.loss=focal"], recipe_type=TaggerRecipe)
