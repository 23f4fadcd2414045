"""`kanime evaluate`: the Frechet distance, cached real statistics, per-tag precision, the
report files, the CLI and the evaluation during `kanime fit`."""

import json
import os
import shutil

import cv2
import keras
import numpy as np
import pytest
from conftest import ROOT, write_recipe
from typer.testing import CliRunner

from kanime.cli import app
from kanime.data.procedural import HAIR_RGB, draw_face, make_faces
from kanime.evaluation import evaluate
from kanime.evaluation.fid import (
    FeatureExtractor,
    Statistics,
    frechet_distance,
    inception_extractor,
    real_statistics,
)
from kanime.evaluation.monitor import evaluation_callbacks
from kanime.evaluation.precision import prompts, real_precision, tag_precision
from kanime.recipe import RecipeError, recipe_from_dict
from kanime.tags import HAIR_COLORS, PAPER_TAGS

runner = CliRunner()
DUMMY_SHARDS = ROOT / "kanime" / "data" / "tfds" / "kanime_faces" / "dummy_data"
HAIR = PAPER_TAGS.group_slice("hair_color")
HAIR_TABLE = np.array([HAIR_RGB[t] for t in HAIR_COLORS])


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    """The default statistics cache goes to a temporary folder, never the user's."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


# --- helpers: a generator that is perfect by construction, and a tagger that reads pixels ---


class ProceduralGenerator:
    """Draws procedural faces of exactly the tags asked for (the noise seeds the face)."""

    vocabulary = PAPER_TAGS
    resolution = 32
    latent_dim = 1

    def __init__(self, registry, hair=None):
        self.registry = registry  # image bytes -> the tags it was drawn with
        self.hair = hair  # a hair colour drawn whatever is asked: a broken generator

    def noise(self, seeds):
        return np.asarray(seeds, dtype=np.float64).reshape(-1, 1)

    def __call__(self, z, tags, batch_size=64):
        images = []
        for seed, row in zip(z[:, 0], np.array(tags, dtype=np.float32)):
            if self.hair is not None:
                row[HAIR] = PAPER_TAGS.encode([self.hair])[HAIR]
            image = draw_face(row, self.resolution, np.random.default_rng(int(seed)))
            self.registry[image.tobytes()] = row
            images.append(image)
        return np.stack(images)


class Oracle:
    """Hair colour from the pixels (the colour most pixels have, within 2 levels); the
    other tags from the registry of drawn faces."""

    def __init__(self, registry):
        self.registry = registry

    def tags(self, images):
        out = np.stack([self.registry[image.tobytes()] for image in images]).copy()
        for i, image in enumerate(images):
            distance = np.abs(image.reshape(-1, 1, 3).astype(int) - HAIR_TABLE[None]).max(-1)
            out[i, HAIR] = 0.0
            out[i, HAIR.start + np.argmax((distance <= 2).sum(0))] = 1.0
        return out


def register_real(registry, n, size=32, seed=1):
    images, tags = make_faces(n, size, seed)
    for image, row in zip(images, tags):
        registry[image.tobytes()] = row
    return images, tags


def tiny_features(dims=6):
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(dims, 3, strides=2, activation="tanh"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    return FeatureExtractor(net, name="tiny")


class Counting(FeatureExtractor):
    calls = 0

    def features(self, images, progress=None):
        Counting.calls += 1
        return super().features(images, progress)


# --- the Frechet distance: known answers --------------------------------------------------


def gaussian(mu, sigma):
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    return Statistics(mu, np.atleast_2d(np.asarray(sigma, dtype=np.float64)), 100)


def test_identical_statistics_are_at_distance_zero():
    a = np.random.default_rng(0).normal(size=(6, 6))
    stats = gaussian(np.arange(6.0), a @ a.T)
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("m1,s1,m2,s2", [(0, 1, 0, 1), (1, 2, 4, 0.5), (-3, 0.1, 2, 7)])
def test_one_dimensional_gaussians(m1, s1, m2, s2):
    distance = frechet_distance(gaussian(m1, s1**2), gaussian(m2, s2**2))
    assert distance == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-9, abs=1e-12)


def test_diagonal_covariances_by_hand():
    # |(0,0)-(1,2)|^2 = 5; tr = 5 + 13; 2 tr sqrt(diag(4, 36)) = 2 (2 + 6) = 16.
    a = gaussian([0.0, 0.0], np.diag([1.0, 4.0]))
    b = gaussian([1.0, 2.0], np.diag([4.0, 9.0]))
    assert frechet_distance(a, b) == pytest.approx(7.0, rel=1e-12)


def test_non_commuting_covariances_by_the_two_by_two_formula():
    # For 2x2 M with eigenvalues l1, l2 >= 0: (tr sqrt M)^2 = tr M + 2 sqrt(det M).
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    product = s1 @ s2
    cross = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = 1.0 + np.trace(s1) + np.trace(s2) - 2 * cross
    distance = frechet_distance(gaussian([1.0, 0.0], s1), gaussian([0.0, 0.0], s2))
    assert distance == pytest.approx(expected, rel=1e-10)


def test_rank_deficient_covariances_stay_finite_and_non_negative():
    features = np.random.default_rng(1).normal(size=(5, 20))  # 5 samples of 20-d: rank 4
    stats = Statistics.of(features)
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(stats, Statistics.of(features * 2)) > 0


def test_statistics_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="different sizes"):
        frechet_distance(gaussian([0.0], 1.0), gaussian([0.0, 0.0], np.eye(2)))


# --- features and the statistics cache ------------------------------------------------------


def test_features_of_a_small_random_network():
    extractor = tiny_features(dims=6)
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    features = extractor.features(images)
    assert features.shape == (7, 6) and features.dtype == np.float32
    assert np.isfinite(features).all() and features.std(axis=0).min() > 0
    x = extractor.preprocess(images)
    assert x.shape == (7, 16, 16, 3) and x.min() >= -1.0 and x.max() <= 1.0


def test_a_feature_model_must_give_vectors():
    net = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="pooling"):
        FeatureExtractor(net).features(np.zeros((2, 8, 8, 3), np.uint8))


def test_real_statistics_are_cached_and_hit_the_second_time(tmp_path):
    extractor = Counting(tiny_features().model, name="tiny")
    Counting.calls = 0
    args = ("procedural", 12, 32, extractor)
    first, cached = real_statistics(*args, seed=1, cache_dir=tmp_path)
    assert not cached and Counting.calls == 1
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second, cached = real_statistics(*args, seed=1, cache_dir=tmp_path)
    assert cached and Counting.calls == 1
    np.testing.assert_array_equal(first.sigma, second.sigma)
    assert second.count == 12
    _, cached = real_statistics("procedural", 13, 32, extractor, seed=1, cache_dir=tmp_path)
    assert not cached  # another n
    _, cached = real_statistics(*args, seed=2, cache_dir=tmp_path)
    assert not cached  # other faces


def test_the_cache_is_invalidated_when_the_data_change(tmp_path):
    data = tmp_path / "faces"
    shutil.copytree(DUMMY_SHARDS, data)
    extractor = tiny_features()
    cache = tmp_path / "cache"
    _, cached = real_statistics(data, 4, 32, extractor, cache_dir=cache)
    assert not cached
    _, cached = real_statistics(data, 4, 32, extractor, cache_dir=cache)
    assert cached
    shard = data / "faces-00001.tfrecord"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    _, cached = real_statistics(data, 4, 32, extractor, cache_dir=cache)
    assert not cached


@pytest.mark.large
def test_inception_weights_from_a_local_file(tmp_path):
    reference = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=(299, 299, 3), pooling="avg"
    )
    path = tmp_path / "inception.weights.h5"
    reference.save_weights(path)
    extractor = inception_extractor(path)
    assert extractor.fingerprint == FeatureExtractor(reference, "inception_v3").fingerprint
    assert extractor.features(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 2048)


def test_missing_or_bad_inception_weights_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        inception_extractor(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not weights")
    with pytest.raises(ValueError, match="bad.h5"):
        inception_extractor(bad)


# --- per-tag precision --------------------------------------------------------------------


def test_prompts_ask_for_the_tag_and_keep_exclusive_groups_to_one():
    rng = np.random.default_rng(0)
    prior = np.ones((3, len(PAPER_TAGS)), np.float32)  # every tag of every group on
    for tag in ("red hair", "ponytail", "glasses"):
        rows = prompts(PAPER_TAGS, tag, 50, rng, prior=prior)
        assert (rows[:, PAPER_TAGS.index(tag)] == 1).all()
        for group in PAPER_TAGS.groups:
            counts = rows[:, PAPER_TAGS.group_slice(group.name)].sum(axis=1)
            assert (counts <= 1).all() if group.exclusive else (counts == group.size).all()
    rows = prompts(PAPER_TAGS, "hat", 400, rng)  # the vocabulary's prior
    others = rows[:, PAPER_TAGS.index("smile")].mean()
    assert 0.15 < others < 0.35  # the other tags keep their 0.25 rate


def test_a_perfect_generator_has_precision_near_one():
    registry = {}
    rows = tag_precision(ProceduralGenerator(registry), Oracle(registry), per_tag=6, seed=0)
    assert list(rows) == list(PAPER_TAGS.names)
    assert all(row["asked"] == 6 for row in rows.values())
    precision = np.array([row["precision"] for row in rows.values()])
    assert precision.mean() > 0.97 and precision.min() >= 5 / 6


def test_a_generator_that_ignores_hair_colour_is_caught():
    registry = {}
    broken = ProceduralGenerator(registry, hair="blonde hair")
    rows = tag_precision(broken, Oracle(registry), per_tag=6, seed=0)
    assert rows["blonde hair"]["precision"] == 1.0
    others = [rows[t]["precision"] for t in HAIR_COLORS if t != "blonde hair"]
    assert max(others) <= 1 / 6
    assert rows["blue eyes"]["precision"] == 1.0


def test_real_precision_is_the_taggers_hit_rate_on_real_faces():
    registry = {}
    images, tags = register_real(registry, 40)
    rows = real_precision(images, tags, Oracle(registry), PAPER_TAGS)
    for k, name in enumerate(PAPER_TAGS.names):
        assert rows[name]["support"] == int(tags[:, k].sum())
        assert rows[name]["precision"] in (None, 1.0)

    class Blind:
        def tags(self, images):
            return np.zeros((len(images), len(PAPER_TAGS)))

    rows = real_precision(images, tags, Blind(), PAPER_TAGS)
    assert {row["precision"] for row in rows.values() if row["support"]} == {0.0}


def test_a_tagger_of_other_tags_is_refused():
    from kanime.tags import TagGroup, TagVocabulary

    class Other(Oracle):
        vocabulary = TagVocabulary([TagGroup("x", ("cat ears",))])

    with pytest.raises(ValueError, match="same tags"):
        tag_precision(ProceduralGenerator({}), Other({}), per_tag=1)


# --- evaluate: the report files -------------------------------------------------------------


def test_evaluate_writes_json_markdown_and_chart(tmp_path):
    registry = {}
    register_real(registry, 24, seed=1)
    generator, oracle = ProceduralGenerator(registry), Oracle(registry)
    out = tmp_path / "report"
    cache = tmp_path / "cache"
    result = evaluate(
        generator, "procedural", n=24, tagger=oracle, out=out, per_tag=3,
        features=tiny_features(), cache_dir=cache, seed=1, progress=False,
    )  # fmt: skip
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["fid"] == result["fid"] and saved["fid"]["n_real"] == 24
    assert saved["precision"]["mean_generated"] > 0.95
    assert saved["precision"]["mean_real"] == 1.0
    board = saved["checkerboard"]  # procedural faces both: alike, and smooth
    assert board["faces"] == 24 and board["generated"] == pytest.approx(board["real"], rel=0.5)
    table = (out / "evaluation.md").read_text()
    assert "| Tag | Precision (generated) | Precision (real) |" in table
    assert table.count("\n| ") == len(PAPER_TAGS) + 3  # header, rule, 34 tags, the mean
    chart = cv2.imread(str(out / "evaluation.png"))
    assert chart is not None and chart.shape[1] > chart.shape[0]

    blank = type(
        "Blank", (ProceduralGenerator,),
        {"__call__": lambda self, z, tags, batch_size=64: np.zeros((len(z), 32, 32, 3), "uint8")},
    )({})  # fmt: skip
    worse = evaluate(
        blank, "procedural", n=24, out=tmp_path / "blank", features=tiny_features(),
        cache_dir=cache, seed=1, progress=False,
    )  # fmt: skip
    assert worse["fid"]["real_statistics_cached"]
    assert worse["fid"]["value"] > 3 * result["fid"]["value"]
    assert worse["precision"] is None
    assert not (tmp_path / "blank" / "evaluation.png").exists()


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def tiny_models(tmp_path):
    from kanime.models import Generator
    from kanime.tagger import build_tagger

    keras.utils.set_random_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1, upsample_channels=16).save(
        run / "generator.keras"
    )
    tagger = tmp_path / "tagger"
    tagger.mkdir()
    build_tagger(32, channels=4).save(tagger / "tagger.keras")
    return run, tagger


def test_evaluate_through_the_cli(tiny_models):
    run, tagger = tiny_models
    args = ["evaluate", str(run), "--data", "procedural", "--n", "8", "--tagger", str(tagger),
            "--features", "tagger", "--per-tag", "2", "--no-progress"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "FID (tagger, 8 generated vs 8 real)" in result.output
    saved = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert saved["precision"]["per_tag"] == 2 and len(saved["precision"]["tags"]) == 34
    assert (run / "evaluation" / "evaluation.png").is_file()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--features", "clip"], "--features must be one of"),
        (["--features", "tagger"], "--features tagger needs --tagger"),
        (["--n", "1"], "--n must be at least 2"),
        (["--inception-weights", "missing.h5"], "missing.h5"),
        (["--tagger", "no-tagger-here"], "no-tagger-here"),
    ],
)
def test_cli_errors(tiny_models, extra, message):
    run, _ = tiny_models
    result = runner.invoke(app, ["evaluate", str(run), "--data", "procedural", *extra])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_says_how_to_get_inception_weights_when_the_download_fails(monkeypatch, tiny_models):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")

    monkeypatch.setattr(keras.applications, "InceptionV3", offline)
    run, _ = tiny_models
    result = runner.invoke(app, ["evaluate", str(run), "--data", "procedural", "--n", "8"])
    assert result.exit_code == 2, result.output
    assert "Could not download the InceptionV3 weights" in result.output
    assert "--inception-weights PATH" in result.output


def test_cli_names_a_missing_generator_and_data(tmp_path, tiny_models):
    run, tagger = tiny_models
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), "--data", "procedural"])
    assert result.exit_code == 2 and "nope" in result.output
    result = runner.invoke(
        app, ["evaluate", str(run), "--data", str(tmp_path / "no-data"), "--tagger", str(tagger),
              "--features", "tagger"],
    )  # fmt: skip
    assert result.exit_code == 2 and "no-data" in result.output


# --- evaluation during kanime fit -----------------------------------------------------------


def test_evaluation_settings_are_checked_before_training(tmp_path):
    recipe = recipe_from_dict({"logging": {"log_every": 50, "evaluate_every": 75}})
    with pytest.raises(RecipeError, match="multiple of logging.log_every"):
        evaluation_callbacks(recipe)
    recipe = recipe_from_dict({"logging": {"evaluate_every": 50, "evaluate_features": "tagger"}})
    with pytest.raises(RecipeError, match="evaluate_tagger"):
        evaluation_callbacks(recipe)
    recipe = recipe_from_dict(
        {"logging": {"evaluate_every": 50, "evaluate_tagger": str(tmp_path / "none")}}
    )
    with pytest.raises(RecipeError, match="none"):
        evaluation_callbacks(recipe)
    assert evaluation_callbacks(recipe_from_dict({})) == []


@pytest.mark.large
def test_fit_logs_fid_and_precision_every_n_steps(tmp_path, tiny_models):
    from kanime.training.fit import fit

    _, tagger = tiny_models
    logging = {"evaluate_every": 4, "evaluate_n": 16, "evaluate_features": "tagger",
               "evaluate_tagger": str(tagger)}  # fmt: skip
    recipe = write_recipe(tmp_path / "r.yaml", logging={**logging})
    fit(recipe, run_dir=tmp_path / "fit", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "fit/logs/metrics.jsonl").open()]
    evaluated = [row["step"] for row in rows if "eval/fid" in row]
    assert evaluated == [4, 8]
    last = rows[-1]
    assert last["eval/fid"] >= 0 and 0 <= last["eval/precision"] <= 1
    assert "eval/precision/blonde_hair" in last and "d_loss" in last
