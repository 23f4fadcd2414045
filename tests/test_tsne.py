import json

import numpy as np
import pytest
from typer.testing import CliRunner

from kanime.cli import app
from kanime.data.faces import load_faces
from kanime.tagger.apply import load_tagger_features, tagger_features
from kanime.tags import PAPER_TAGS
from kanime.viz.tsne import embed, hair_colors, pixel_features, tsne

runner = CliRunner()
N = 120


def _png_shape(path):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image.shape[:2]


@pytest.fixture(scope="module")
def procedural_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tsne")
    result = runner.invoke(
        app, ["tsne", "procedural", "--n", str(N), "--size", "32", "--out", str(out),
              "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_procedural_command_writes_two_pictures_and_the_coordinates(procedural_run):
    out, printed = procedural_run
    for name in ("tsne-thumbnails.png", "tsne-hair.png", "tsne.npz"):
        assert str(out / name) in printed
    height, width = _png_shape(out / "tsne-thumbnails.png")  # a 40-px title band on top
    assert max(height - 40, width) == 2000 and min(height - 40, width) >= 64
    height, width = _png_shape(out / "tsne-hair.png")
    assert width == 1500 and 500 <= height <= 1500
    saved = np.load(out / "tsne.npz")
    assert saved["coords"].shape == (N, 2) and np.all(np.isfinite(saved["coords"]))
    assert saved["ids"].shape == (N,) and len(set(saved["ids"].tolist())) == N
    assert saved["tags"].shape == (N, 34)
    assert tuple(saved["tag_names"].tolist()) == PAPER_TAGS.names
    assert not list(out.glob(".*")), "temporary files left behind"


def test_same_seed_same_coordinates(procedural_run, tmp_path):
    out, _ = procedural_run
    again = tsne("procedural", tmp_path, n=N, image_size=32, seed=0)
    assert again["faces"] == N
    np.testing.assert_array_equal(
        np.load(again["arrays"])["coords"], np.load(out / "tsne.npz")["coords"]
    )


def test_procedural_faces_of_one_hair_colour_lie_together():
    # Measured over seeds 0-4: same-hair distances are about 0.5 of the mean distance
    # (random labels: 1.0).
    images, tags, _, names = load_faces("procedural", N, 32, seed=0)
    coords = embed(pixel_features(images), perplexity=30, seed=0)
    hair, _ = hair_colors(tags, names)
    assert np.all(hair >= 0)  # every procedural face has one hair colour
    distance = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    others = ~np.eye(N, dtype=bool)
    same = (hair[:, None] == hair[None]) & others
    assert distance[same].mean() < 0.75 * distance[others].mean()


def test_tagger_features_are_its_256_d_features_layer(tmp_path):
    import keras

    from kanime.tagger import build_tagger

    path = tmp_path / "tagger.keras"
    keras.saving.save_model(build_tagger(32, channels=8), path)
    model, size = load_tagger_features(path)
    assert size == 32
    images, *_ = load_faces("procedural", 6, 32)
    assert tagger_features(model, images).shape == (6, 256)
    result = tsne(
        "procedural", tmp_path / "out", tagger=path, n=40, perplexity=5, image_size=48
    )  # faces loaded at 48 px are resized to the tagger's 32
    assert result["features"].startswith("tagger features (256-d)")
    assert np.load(result["arrays"])["coords"].shape == (40, 2)


def test_prepared_dataset_gives_ids_and_tags_of_the_chosen_faces(tmp_path):
    pytest.importorskip("tensorflow")
    import cv2

    from kanime.data.tfrecords import ShardWriter, encode_example

    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    with ShardWriter(folder, shard_size=7) as writer:
        for i in range(20):
            tags = np.zeros(34, np.float32)
            tags[i % 13] = 1.0
            image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            jpeg = cv2.imencode(".jpg", image)[1].tobytes()
            writer.write(encode_example(f"face-{i}", jpeg, tags, 1, f"{i}.png"))
            truth[f"face-{i}"] = tags
    (folder / "prepare.json").write_text(json.dumps({"tags": list(PAPER_TAGS.names)}))
    images, tags, ids, names = load_faces(folder, 12, 16, seed=1)
    assert images.shape == (12, 16, 16, 3) and len(set(ids)) == 12
    for face_id, row in zip(ids, tags):
        np.testing.assert_array_equal(row, truth[face_id])
    assert names == PAPER_TAGS.names
    again = load_faces(folder, 12, 16, seed=1)[2]
    assert again.tolist() == ids.tolist()
    assert len(load_faces(folder, 100, 16)[2]) == 20  # a smaller dataset gives all its faces
    result = runner.invoke(app, ["tsne", str(folder), "--perplexity", "5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (folder / "tsne" / "tsne-hair.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing"], "No TFRecord shards"),
        (["procedural", "--n", "1"], "at least 2 faces"),
        (["procedural", "--n", "20"], "Use --perplexity 6 or less"),
        (["procedural", "--perplexity", "0"], "must be positive"),
        (["procedural", "--tagger", "{tmp}/nope.keras"], "No tagger file"),
        (["procedural", "--tagger", "{tmp}/junk.keras"], "is not a Keras model file"),
        (["procedural", "--tagger", "{tmp}/plain.keras"], "no layer named `features`"),
    ],
)
def test_bad_inputs_are_clear_errors(tmp_path, args, message):
    import keras

    (tmp_path / "junk.keras").write_text("not a model")
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    keras.saving.save_model(plain, tmp_path / "plain.keras")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["tsne", *args, "--size", "32", "--no-progress",
                                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
