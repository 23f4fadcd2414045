"""`kanime sweep`: variants and their names, checks before training, the summary, a tiny
sweep and its rerun, and a diverged variant."""

import json
import os
import time

import cv2
import h5py
import keras
import numpy as np
import pytest
import yaml
from conftest import write_recipe
from typer.testing import CliRunner

import kanime.sweep
from kanime.cli import app
from kanime.recipe import RecipeError
from kanime.run.callbacks import TrainingStoppedError
from kanime.run.checkpoint import META
from kanime.sweep import (
    Variant,
    ceiling_ratios,
    expand_variants,
    parse_set,
    parse_variant,
    summarize,
    sweep,
)
from kanime.training.fit import FitResult

runner = CliRunner()


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    """The real statistics cache of the evaluation goes to a temporary folder."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


# --- variants -------------------------------------------------------------------------------


def test_sets_give_their_product_named_by_the_last_key_part():
    variants = expand_variants(["training.lambda_gp=1,4", "data.flip=true,false"])
    assert variants == [
        Variant("lambda_gp=1,flip=true", ("training.lambda_gp=1", "data.flip=true")),
        Variant("lambda_gp=1,flip=false", ("training.lambda_gp=1", "data.flip=false")),
        Variant("lambda_gp=4,flip=true", ("training.lambda_gp=4", "data.flip=true")),
        Variant("lambda_gp=4,flip=false", ("training.lambda_gp=4", "data.flip=false")),
    ]


def test_nothing_given_is_the_recipe_itself():
    assert expand_variants() == [Variant("baseline", ())]
    assert expand_variants(variants=["baseline:"]) == [Variant("baseline", ())]


def test_explicit_variants_are_crossed_with_the_sets():
    variants = expand_variants(
        sets=["training.lambda_gp=0.5,5"],
        variants=["baseline:", "data:training.fake_tags=data;training.lambda_adv=1",
                  "model.generator={channels: 32, num_blocks: 2}"],
    )  # fmt: skip
    assert [v.name for v in variants] == [
        "baseline,lambda_gp=0.5",
        "baseline,lambda_gp=5",
        "data,lambda_gp=0.5",
        "data,lambda_gp=5",
        # no name: made from all overrides, characters outside [A-Za-z0-9._=,+-] become "-"
        "generator=-channels-32,-num_blocks-2-,lambda_gp=0.5",
        "generator=-channels-32,-num_blocks-2-,lambda_gp=5",
    ]
    assert variants[2].overrides == (
        "training.fake_tags=data", "training.lambda_adv=1", "training.lambda_gp=0.5",
    )  # fmt: skip
    assert variants[4].overrides == (
        "model.generator={channels: 32, num_blocks: 2}", "training.lambda_gp=0.5",
    )  # fmt: skip


def test_values_keep_their_commas_inside_brackets():
    assert parse_set("model.generator={channels: 32, num_blocks: 4},{channels: 64}") == (
        "model.generator", ["{channels: 32, num_blocks: 4}", "{channels: 64}"]
    )  # fmt: skip
    assert parse_variant("x:data.path='a;b';seed=2") == ("x", ("data.path='a;b'", "seed=2"))
    assert parse_variant("seed=2") == (None, ("seed=2",))
    assert expand_variants(variants=["my run/1:seed=2"])[0].name == "my-run-1"


@pytest.mark.parametrize(
    "sets,variants,message",
    [
        (["training.lambda_gp"], [], "key.path=value"),
        (["training.lambda_gp=1,,2"], [], "empty value"),
        (["seed=1,2", "seed=3"], [], "set twice"),
        ([], ["a:seed"], "key.path=value"),
        ([], [""], "name:key=v"),
        (["seed=1,2"], ["a:seed=3"], "also sets"),
        ([], ["a:seed=1", "a:seed=2"], "both named 'a'"),
        ([], ["training.seed=1", "model.seed=1"], "both named 'seed=1'"),
        ([], ["sweep.json:seed=1"], "cannot name"),
    ],
)
def test_malformed_sets_and_variants_are_refused(sets, variants, message):
    with pytest.raises(RecipeError, match=message):
        expand_variants(sets, variants)


def test_a_bad_override_fails_before_anything_trains(tmp_path, tiny_recipe, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("fit was called")

    monkeypatch.setattr(kanime.sweep, "fit", no_training)
    out = tmp_path / "sweep"
    with pytest.raises(RecipeError, match="lamda_gp"):
        sweep(tiny_recipe, out, sets=["training.lambda_gp=1,2"],
              variants=["ok:", "typo:training.lamda_gp=3"], progress=False)  # fmt: skip
    with pytest.raises(RecipeError, match="batch_size"):
        sweep(tiny_recipe, out, sets=["training.batch_size=8,-1"], progress=False)
    assert not out.exists()
    result = runner.invoke(app, ["sweep", str(tiny_recipe), "--out", str(out),
                                 "--set", "training.lamda_gp=1,2"])  # fmt: skip
    assert result.exit_code == 2 and "lamda_gp" in result.output
    result = runner.invoke(app, ["sweep", str(tiny_recipe), "--out", str(out),
                                 "--heldout", "procedural"])  # fmt: skip
    assert result.exit_code == 2 and "--tagger" in result.output
    assert not out.exists()


# --- the summary ------------------------------------------------------------------------------


def tag(group, generated, real, support):
    return {"group": group, "generated": generated, "real": real, "real_support": support}


TAGS = {
    "blonde hair": tag("hair_color", 0.6, 0.9, 40),
    "red hair": tag("hair_color", 0.2, 0.7, 25),
    "pink hair": tag("hair_color", 1.0, 1.0, 3),  # too few held-out faces: left out
    "blue eyes": tag("eye_color", 0.5, 1.0, 20),
    "red eyes": tag("eye_color", 0.0, None, 0),
    "twintails": tag("hair_style", 0.3, 0.6, 30),
    "hat": tag("other", 0.1, 0.2, 50),
    "smile": tag("other", 0.9, 0.9, 19),  # left out
}


def test_ratios_to_the_ceiling_count_only_tags_with_enough_support():
    ratios = ceiling_ratios(TAGS, min_support=20)
    assert ratios["hair"] == pytest.approx((0.6 + 0.2) / (0.9 + 0.7))
    assert ratios["eye"] == pytest.approx(0.5)
    assert ratios["other"] == pytest.approx((0.3 + 0.1) / (0.6 + 0.2))  # style and other
    assert ratios["tags"] == {"hair": 2, "eye": 1, "other": 2}
    assert ceiling_ratios(TAGS, min_support=100) == {
        "hair": None, "eye": None, "other": None, "tags": {"hair": 0, "eye": 0, "other": 0},
    }  # fmt: skip
    assert ceiling_ratios(TAGS, min_support=0)["hair"] == pytest.approx(1.8 / 2.6)


def test_summary_of_a_run_folder_and_an_evaluation(tmp_path):
    run = tmp_path / "run"
    fake_run(run, batch_size=16, rows=[
        {"step": 2, "gp": 0.5, "d_loss": 3.0, "perf/seconds_per_step": 9.0},
        {"step": 4, "gp": 2.5, "d_loss": 2.0, "d_real_logit": 1.5, "d_fake_logit": -1.0,
         "perf/seconds_per_step": 0.2},
        {"step": 6, "gp": 1.0, "d_loss": 1.0, "d_real_logit": 2.0, "d_fake_logit": -2.0,
         "perf/seconds_per_step": 0.3},
    ])  # fmt: skip
    evaluation = {"fid": {"value": 12.5}, "precision": {"tags": {
        name: {**row, "asked": 4, "found": 1} for name, row in TAGS.items()}}}  # fmt: skip
    result = summarize(run, evaluation, min_support=20)
    s = result["summary"]
    assert s["step"] == 6 and s["images_seen"] == 96 and s["fid"] == 12.5
    assert s["ratios"]["hair"] == pytest.approx(0.5)
    assert s["gp_final"] == 1.0 and s["gp_max"] == 2.5
    assert s["d_real_logit_final"] == 2.0 and s["d_fake_logit_final"] == -2.0
    assert s["seconds_per_step"] == 0.3  # the median: the first interval compiles
    assert result["curves"]["d_real_logit"] == [[4, 1.5], [6, 2.0]]  # step 2 lacks it
    assert result["curves"]["g_loss"] == []
    assert result["tags"]["blonde hair"] == TAGS["blonde hair"]  # asked/found left out
    assert summarize(run)["summary"]["fid"] is None


# --- whole sweeps -----------------------------------------------------------------------------


def fake_run(run_dir, batch_size=8, rows=(), sample_step=None, backup_step=None):
    """A run folder as `fit` leaves it: recipe.yaml, metrics, a sample grid, a backup and
    a (dummy) generator.keras, which a finished run's `fit` leaves as it is."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    generator = run_dir / "generator.keras"
    if not generator.exists():
        generator.write_bytes(b"not a model")
        an_hour_ago = time.time_ns() - 3600 * 10**9  # so evaluations are newer
        os.utime(generator, ns=(an_hour_ago, an_hour_ago))
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump({"training": {"batch_size": batch_size}}))
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    (run_dir / "logs" / "metrics.jsonl").write_text(lines)
    if sample_step is not None:
        (run_dir / "samples").mkdir(exist_ok=True)
        image = np.full((20, 20, 3), 200, np.uint8)
        cv2.imwrite(str(run_dir / "samples" / f"step-{sample_step:07d}.png"), image)
    if backup_step is not None:
        (run_dir / "backup").mkdir(exist_ok=True)
        with h5py.File(run_dir / "backup" / "state.weights.h5", "w") as f:
            f.attrs[META] = json.dumps({"step": backup_step})


def fake_fit(calls):
    """Stands for `fit`: `training.lambda_gp=0` diverges at step 4 after a backup at 2;
    other variants reach step 4."""

    def fit(recipe, run_dir, overrides, progress):
        calls.append((run_dir.name, list(overrides)))
        if "training.lambda_gp=0" in overrides:
            fake_run(run_dir, rows=[{"step": 2, "gp": 7.0}], backup_step=2)
            raise TrainingStoppedError("Training stopped at step 4: gp=inf. In ..., kept.")
        fake_run(run_dir, sample_step=4, rows=[
            {"step": 2, "gp": 0.1, "d_real_logit": 0.5, "d_fake_logit": -0.5},
            {"step": 4, "gp": 0.3, "d_real_logit": 0.7, "d_fake_logit": -0.6},
        ])  # fmt: skip
        return FitResult(run_dir, 4, 0, {})

    return fit


def fake_evaluate(calls):
    """Stands for `evaluate`: writes an evaluation.json of the hand-made `TAGS`."""

    def evaluate(run_dir, heldout, n, tagger, out, per_tag, features, progress):
        calls.append(run_dir.name)
        assert out == run_dir / "evaluation" and features == "tagger"
        precision = {"per_tag": per_tag, "tagger": str(tagger), "tags": TAGS}
        result = {"data": str(heldout), "precision": precision,
                  "fid": {"value": 3.5, "n_generated": n, "features": "tagger"},
                  "checkerboard": {"generated": 1.5, "real": 1.2, "faces": n}}  # fmt: skip
        out.mkdir(exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result))
        return result

    return evaluate


def test_a_diverged_variant_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_recipe, monkeypatch):
    calls = []
    monkeypatch.setattr(kanime.sweep, "fit", fake_fit(calls))
    lines = []
    out = tmp_path / "sweep"
    result = sweep(tiny_recipe, out, sets=["training.lambda_gp=0,0.5"], steps=4,
                   progress=False, log=lines.append)  # fmt: skip
    assert calls == [
        ("lambda_gp=0", ["training.lambda_gp=0", "training.steps=4"]),
        ("lambda_gp=0.5", ["training.lambda_gp=0.5", "training.steps=4"]),
    ]
    diverged, fine = result["variants"]
    assert diverged["diverged"] and diverged["stopped_at"] == 2 and diverged["step"] == 2
    assert diverged["stop_reason"].startswith("Training stopped at step 4: gp=inf")
    assert diverged["summary"]["images_seen"] == 16 and diverged["summary"]["gp_max"] == 7.0
    assert diverged["summary"]["d_real_logit_final"] is None  # an older run's metrics
    assert not fine["diverged"] and fine["summary"]["images_seen"] == 32
    assert fine["summary"]["d_fake_logit_final"] == -0.6
    assert fine["summary"]["fid"] is None and fine["tags"] is None  # no evaluation asked
    assert any("diverged" in line and "lambda_gp=0:" in line for line in lines)
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["variants"][0]["stop_reason"] == diverged["stop_reason"]
    assert saved["inputs"]["sets"] == ["training.lambda_gp=0,0.5"] and saved["inputs"]["steps"] == 4
    table = (out / "sweep.md").read_text()
    assert "| lambda_gp=0 | 2 | 16 | yes (backup at 2) |" in table
    assert "| lambda_gp=0.5 | 4 | 32 | no |" in table
    assert "- lambda_gp=0: Training stopped at step 4" in table
    for name in ("grids.png", "curves.png"):
        assert cv2.imread(str(out / name)) is not None, name


def test_evaluations_are_kept_while_newer_than_the_generator(tmp_path, tiny_recipe, monkeypatch):
    trained, evaluated = [], []
    monkeypatch.setattr(kanime.sweep, "fit", fake_fit(trained))
    monkeypatch.setattr(kanime.sweep, "evaluate", fake_evaluate(evaluated))
    tagger = tmp_path / "tagger.keras"
    tagger.write_bytes(b"")
    out = tmp_path / "sweep"
    args = dict(variants=["bad:training.lambda_gp=0", "good:"], heldout="procedural",
                tagger=tagger, n=50, per_tag=4, progress=False, log=lambda line: None)  # fmt: skip
    result = sweep(tiny_recipe, out, **args)
    assert evaluated == ["bad", "good"]  # the diverged run has a generator.keras: evaluated
    for row in result["variants"]:
        assert row["summary"]["fid"] == 3.5
        assert row["summary"]["ratios"] == ceiling_ratios(TAGS, min_support=20)
        assert row["tags"]["blonde hair"] == TAGS["blonde hair"]
    table = (out / "sweep.md").read_text()
    assert "| Tag | Real (support) | bad | good |" in table
    assert "| blonde hair | 0.900 (40) | 0.600 | 0.600 |" in table
    assert "| smile | 0.900 (19) * | 0.900 | 0.900 |" in table  # below min_support

    sweep(tiny_recipe, out, **args)
    assert evaluated == ["bad", "good"]  # both evaluations are newer than the generators
    sweep(tiny_recipe, out, **{**args, "per_tag": 8})
    assert evaluated == ["bad", "good", "bad", "good"]  # made with other settings
    generator = out / "good" / "generator.keras"
    later = (out / "good" / "evaluation" / "evaluation.json").stat().st_mtime_ns + 10**9
    os.utime(generator, ns=(later, later))
    sweep(tiny_recipe, out, **{**args, "per_tag": 8})
    assert evaluated[4:] == ["good"]  # a generator exported after its evaluation


@pytest.fixture
def tiny_tagger(tmp_path):
    from kanime.tagger import build_tagger

    keras.utils.set_random_seed(0)
    folder = tmp_path / "tagger"
    folder.mkdir()
    build_tagger(32, channels=4).save(folder / "tagger.keras")
    return folder


def test_a_tiny_sweep_trains_evaluates_and_is_not_redone(tmp_path, tiny_tagger):
    recipe = write_recipe(tmp_path / "tiny.yaml", data={"num_images": 32})
    out = tmp_path / "sweep"
    args = dict(sets=["training.lambda_gp=0.5,5"], steps=2, heldout="procedural",
                tagger=tiny_tagger, n=8, per_tag=1, min_support=2)  # fmt: skip
    result = sweep(recipe, out, progress=False, log=lambda line: None, **args)
    names = ["lambda_gp=0.5", "lambda_gp=5"]
    assert [row["name"] for row in result["variants"]] == names
    for row in result["variants"]:
        run = out / row["name"]
        assert row["step"] == 2 and not row["diverged"]
        assert row["summary"]["images_seen"] == 2 * 8  # steps x batch size
        assert yaml.safe_load((run / "recipe.yaml").read_text())["training"]["steps"] == 2
        evaluation = json.loads((run / "evaluation" / "evaluation.json").read_text())
        assert row["summary"]["fid"] == evaluation["fid"]["value"]
        assert evaluation["fid"]["features"] == "tagger"
        tags = evaluation["precision"]["tags"]
        assert row["summary"]["ratios"] == ceiling_ratios(tags, min_support=2)
        assert set(row["tags"]) == set(tags) and len(tags) == 34
        assert [p for p, _ in row["curves"]["gp"]] == [2]
    resolved = yaml.safe_load((out / names[1] / "recipe.yaml").read_text())
    assert resolved["training"]["lambda_gp"] == 5.0
    table = (out / "sweep.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| lambda_gp=")]
    assert len(rows) == 2  # the summary table
    assert "| Tag | Real (support) | lambda_gp=0.5 | lambda_gp=5 |" in table
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["inputs"]["n"] == 8 and len(saved["variants"]) == 2
    grids, curves = cv2.imread(str(out / "grids.png")), cv2.imread(str(out / "curves.png"))
    assert grids.shape[1] > grids.shape[0] and curves is not None  # two grids side by side

    watched = [out / name / f for name in names
               for f in ("generator.keras", "evaluation/evaluation.json")]  # fmt: skip
    before = [path.stat().st_mtime_ns for path in watched]
    command = ["sweep", str(recipe), "--out", str(out), "--set", "training.lambda_gp=0.5,5",
               "--steps", "2", "--heldout", "procedural", "--tagger", str(tiny_tagger),
               "--n", "8", "--per-tag", "1", "--min-support", "2", "--no-progress"]  # fmt: skip
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert [path.stat().st_mtime_ns for path in watched] == before  # nothing retrained
    assert "at step 2 (resumed from 2" in again.output
    assert "evaluating" not in again.output
    assert f"Wrote {out / 'sweep.md'}" in again.output
    assert "| lambda_gp=5 | 2 | 16 | no |" in again.output
    assert json.loads((out / "sweep.json").read_text())["variants"] == saved["variants"]
