import json
import warnings

import cv2
import keras
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kanime.cli import app
from kanime.data import tfrecords
from kanime.data.prepare import prepare, read_jsonl, read_labels
from kanime.tagger.apply import DANBOORU_SYNONYMS, Tagger, tag_folder
from kanime.tags import PAPER_TAGS

runner = CliRunner()
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _expected(*names):
    return PAPER_TAGS.encode(names)


def _solid(color, height=40, width=40):
    return np.full((height, width, 3), color, np.uint8)


def _tinted(color, seed, size=48):
    """A face-sized image of one colour with a seeded pattern (so hashes differ)."""
    pattern = np.random.default_rng(seed).random((8, 8, 1))
    pattern = cv2.resize(pattern, (size, size), interpolation=cv2.INTER_NEAREST)[..., None]
    return (np.array(color, np.float64) * (0.7 + 0.3 * pattern)).astype(np.uint8)


def _colour_tagger(run, threshold=0.5, settings=True, size=16):
    """A kanime tagger whose scores follow the mean colour of images in [-1, 1].

    red hair: R - B; blue hair: B - R; blue eyes: B; smile: always; the rest: never.
    Images scaled to [0, 1] or given as BGR would get other tags.
    """
    inputs = keras.Input((size, size, 3), name="images")
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    scores = keras.layers.Dense(len(PAPER_TAGS), activation="sigmoid", name="scores")(pooled)
    model = keras.Model(inputs, scores)
    kernel, bias = np.zeros((3, len(PAPER_TAGS))), np.full(len(PAPER_TAGS), -10.0)
    for name, weights in [("red hair", (10, 0, -10)), ("blue hair", (-10, 0, 10))]:
        kernel[:, PAPER_TAGS.index(name)], bias[PAPER_TAGS.index(name)] = weights, 0.0
    kernel[2, PAPER_TAGS.index("blue eyes")], bias[PAPER_TAGS.index("blue eyes")] = 10.0, 0.0
    bias[PAPER_TAGS.index("smile")] = 10.0
    model.get_layer("scores").set_weights([kernel, bias])
    run.mkdir(parents=True, exist_ok=True)
    model.save(run / "tagger.keras")
    if settings:
        content = {"image_size": size, "tags": list(PAPER_TAGS.names), "threshold": threshold}
        (run / "settings.json").write_text(json.dumps(content))
    return run


DANBOORU = ["1girl", "Blonde_Hair", "blue_eyes", "grey_hair", "hair_ribbon", "solo"]


def _danbooru_folder(folder, tags=DANBOORU, suffix=".keras", size=24):
    """A DeepDanbooru-style folder: 6 sigmoid outputs with known values on RGB in [0, 1].

    1girl, grey_hair, hair_ribbon, solo: always; Blonde_Hair: never; blue_eyes: blue
    channel above 0.6 (so a (0, 0, 180) image has blue eyes only when scaled to [0, 1]).
    """
    inputs = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    scores = keras.layers.Dense(6, activation="sigmoid", name="scores")(pooled)
    model = keras.Model(inputs, scores)
    kernel = np.zeros((3, 6))
    kernel[2, 2] = 40.0
    bias = np.array([10.0, -10.0, -24.0, 10.0, 10.0, 10.0])
    model.get_layer("scores").set_weights([kernel, bias])
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / f"model-resnet_custom_v3{suffix}")
    (folder / "tags.txt").write_text("\n".join(tags) + "\n")
    return folder


# --- our own tagger ------------------------------------------------------------------------


def test_kanime_tagger_scales_to_minus_one_one_and_reads_its_settings(tmp_path):
    run = _colour_tagger(tmp_path / "run")
    for path in (run, run / "tagger.keras"):
        tagger = Tagger(path)
        assert tagger.kind == "kanime" and tagger.image_size == (16, 16)
        assert tagger.threshold == 0.5 and tagger.missing == []
        # any size, not square: centre-cropped and resized
        images = [_solid(RED), _solid(BLUE, 20, 36)]
        tags = tagger.tags(images)
        np.testing.assert_array_equal(tags[0], _expected("red hair", "smile"))
        np.testing.assert_array_equal(tags[1], _expected("blue hair", "blue eyes", "smile"))
        scores = tagger.scores(np.stack([_solid(RED)] * 3))
        assert scores.shape == (3, 34) and scores.dtype == np.float32
        assert scores[0, PAPER_TAGS.index("red hair")] > 0.99


def test_kanime_tagger_without_settings_and_with_a_threshold(tmp_path):
    run = _colour_tagger(tmp_path / "run", settings=False)
    tagger = Tagger(run / "tagger.keras", batch_size=1)
    assert tagger.threshold is None and tagger.image_size == (16, 16)
    (run / "evaluation.json").write_text(json.dumps({"threshold": 0.7}))
    assert Tagger(run).threshold == 0.7
    low = Tagger(run, threshold=1e-6).tags([_solid(RED)])[0]  # every "never" tag passes
    assert low[PAPER_TAGS.index("hat")] == 1 and low[:13].sum() == 1  # one hair colour


def test_kanime_tagger_settings_that_do_not_match_the_model(tmp_path):
    run = _colour_tagger(tmp_path / "run")
    settings = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps(settings | {"tags": settings["tags"][:30]}))
    with pytest.raises(ValueError, match="34 outputs but .*settings.json lists 30 tags"):
        Tagger(run)
    (run / "settings.json").write_text(json.dumps(settings | {"image_size": 32}))
    with pytest.raises(ValueError, match="takes 16x16 images but its settings say 32x32"):
        Tagger(run)


def test_bad_tagger_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Tagger not found.*nowhere"):
        Tagger(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no tagger.keras and no tags.txt"):
        Tagger(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a Keras model file"):
        Tagger(tmp_path / "notes.txt")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras: not a Keras model that loads"):
        Tagger(tmp_path / "broken.keras")
    run = _colour_tagger(tmp_path / "run")
    with pytest.raises(ValueError, match="uint8 RGB"):
        Tagger(run).scores([np.zeros((16, 16), np.uint8)])


# --- DeepDanbooru-style folders --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_danbooru_outputs_map_onto_our_tags(tmp_path, suffix):
    folder = _danbooru_folder(tmp_path / "dd", suffix=suffix)
    with pytest.warns(UserWarning, match="30 of 34 tags have no DeepDanbooru counterpart") as w:
        tagger = Tagger(folder)
    assert len(w) == 1 and "glasses" in str(w[0].message) and "silver hair" in str(w[0].message)
    assert tagger.kind == "deepdanbooru" and tagger.image_size == (24, 24)
    assert tagger.threshold is None and tagger.model_path.suffix == suffix
    assert tagger.sources[PAPER_TAGS.index("blonde hair")] == [1]  # case and underscores
    assert tagger.sources[PAPER_TAGS.index("gray hair")] == [3]  # grey_hair
    assert tagger.sources[PAPER_TAGS.index("ribbon")] == [4]  # hair_ribbon
    tags = tagger.tags([_solid((0, 0, 180)), _solid((180, 0, 0), 64, 64)])
    np.testing.assert_array_equal(tags[0], _expected("gray hair", "blue eyes", "ribbon"))
    np.testing.assert_array_equal(tags[1], _expected("gray hair", "ribbon"))
    scores = tagger.scores([_solid((0, 0, 180))])[0]
    assert scores[PAPER_TAGS.index("hat")] == 0.0 and scores[PAPER_TAGS.index("ribbon")] > 0.99
    # the model file given directly, with tags.txt beside it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        direct = Tagger(tagger.model_path)
    assert direct.kind == "deepdanbooru" and direct.sources == tagger.sources


def test_danbooru_mapping_json_overrides_the_table(tmp_path):
    folder = _danbooru_folder(tmp_path / "dd")
    (folder / "mapping.json").write_text(
        json.dumps({"silver_hair": ["grey_hair"], "gray hair": [], "smile": "solo"})
    )
    with pytest.warns(UserWarning, match="29 of 34"):  # smile is mapped now
        tagger = Tagger(folder)
    tags = tagger.tags([_solid((180, 0, 0))])[0]
    np.testing.assert_array_equal(tags, _expected("silver hair", "smile", "ribbon"))
    with pytest.warns(UserWarning):
        argument = Tagger(folder, mapping={"hat": ["1girl"]})
    assert argument.tags([_solid((180, 0, 0))])[0][PAPER_TAGS.index("hat")] == 1
    (folder / "mapping.json").write_text(json.dumps({"silver hiar": ["grey_hair"]}))
    with pytest.raises(ValueError, match="mapping.json: Unknown tag 'silver hiar'.*silver hair"):
        Tagger(folder)
    (folder / "mapping.json").write_text(json.dumps({"hat": 3}))
    with pytest.raises(ValueError, match="mapping.json: the value of 'hat' must be"):
        Tagger(folder)


def test_danbooru_tag_count_and_model_errors(tmp_path):
    short = _danbooru_folder(tmp_path / "short", tags=DANBOORU[:5])
    with pytest.raises(ValueError, match="tags.txt lists 5 tags but .* has 6 outputs"):
        Tagger(short)
    folder = tmp_path / "no-model"
    folder.mkdir()
    (folder / "tags.txt").write_text("smile\n")
    with pytest.raises(FileNotFoundError, match="tags.txt but no model file"):
        Tagger(folder)
    untagged = _danbooru_folder(tmp_path / "no-tags")
    (untagged / "tags.txt").unlink()
    with pytest.raises(FileNotFoundError, match="model-resnet_custom_v3.keras but no tags.txt"):
        Tagger(untagged)
    maps = tmp_path / "maps"
    maps.mkdir()
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(6, 3)(inputs)).save(maps / "model.keras")
    (maps / "tags.txt").write_text("\n".join(DANBOORU))
    with pytest.raises(ValueError, match=r"expected outputs of shape \(N, k\)"):
        Tagger(maps)
    two = _danbooru_folder(tmp_path / "two")
    _danbooru_folder(tmp_path / "two", suffix=".h5")
    with pytest.raises(ValueError, match="several model files"):
        Tagger(two)
    (two / "project.json").write_text(json.dumps({"model": "resnet_custom_v3"}))
    with pytest.warns(UserWarning):
        assert Tagger(two).model_path.name == "model-resnet_custom_v3.h5"


def test_synonym_table_names_only_our_tags():
    assert all(name in PAPER_TAGS.names for name in DANBOORU_SYNONYMS)


# --- kanime tag and kanime prepare --tagger --------------------------------------------------


def _colour_faces(src):
    """Tinted face images, one broken file and two files that share a name."""
    src.mkdir(parents=True)
    colours = {"r0.png": RED, "r1.png": RED, "b0.png": BLUE, "sub/b1.jpg": BLUE}
    for i, (name, colour) in enumerate(colours.items()):
        (src / name).parent.mkdir(exist_ok=True)
        Image.fromarray(_tinted(colour, i)).save(src / name, quality=95)
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    (src / "twin").mkdir()
    (src / "other").mkdir()
    for i, folder in enumerate(["twin", "other"]):
        Image.fromarray(_tinted(RED, 10 + i)).save(src / folder / "same.png")
    return ["b0.png", "r0.png", "r1.png", "sub/b1.jpg"]


def test_tag_folder_writes_labels_that_read_labels_reads(tmp_path):
    src = tmp_path / "faces"
    names = _colour_faces(src)
    tagger = Tagger(_colour_tagger(tmp_path / "run"), batch_size=2)
    result = tag_folder(src, tagger, progress=False)
    assert result["out"] == str(src / "labels.csv") and result["faces"] == 4
    assert {row["source"]: row["reason"] for row in result["skipped"]} == {
        "broken.jpg": "not an image",
        "other/same.png": "file name shared with twin/same.png (labels match by file name)",
        "twin/same.png": "file name shared with other/same.png (labels match by file name)",
    }
    assert result["tags"]["red hair"] == 2 and result["tags"]["blue eyes"] == 2
    assert result["tags"]["smile"] == 4 and result["no_tags"] == 0
    table = read_labels(src / "labels.csv")
    assert sorted(table) == sorted(name.split("/")[-1] for name in names)
    images = [np.asarray(Image.open(src / name).convert("RGB")) for name in names]
    expected = tagger.tags(images)
    for name, row in zip(names, expected):
        np.testing.assert_array_equal(table[name.split("/")[-1]], row)
    assert (src / "labels.csv").read_text().splitlines()[1].startswith("b0.png,0,")
    with pytest.raises(FileExistsError, match="labels.csv exists"):
        tag_folder(src, tagger, progress=False)
    again = tag_folder(src, tagger, tmp_path / "elsewhere.csv", progress=False)
    assert read_labels(again["out"]).keys() == table.keys()


def test_tag_then_prepare_through_the_cli(tmp_path):
    src = tmp_path / "faces"
    _colour_faces(src)
    run = _colour_tagger(tmp_path / "run")
    args = ["tag", str(src), "--tagger", str(run), "--no-progress", "--batch-size", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Skipped broken.jpg: not an image" in result.output
    assert "(4 tagged, 0 with no tag)" in result.output
    assert "red hair           2" in result.output and "hat                0" in result.output
    labels = src / "labels.csv"
    assert f"Labels: {labels}" in result.output
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0

    out = tmp_path / "out"
    prepared = runner.invoke(
        app,
        ["prepare", str(src), str(out), "--faces", "--labels", str(labels), "--size", "32",
         "--workers", "0", "--no-progress"],
    )  # fmt: skip
    assert prepared.exit_code == 0, prepared.output
    table = read_labels(labels)
    rows = {row["source"]: row for row in read_jsonl(out / "manifest.jsonl")}
    assert set(rows) == {"b0.png", "r0.png", "r1.png", "sub/b1.jpg", "twin/same.png",
                         "other/same.png"}  # fmt: skip
    for source in ("b0.png", "r0.png", "r1.png", "sub/b1.jpg"):
        row = rows[source]
        assert row["tagged"] and row["tagged_by"] == "labels"
        assert row["tags"] == PAPER_TAGS.decode(table[source.split("/")[-1]])
    assert rows["r0.png"]["tags"] == ["red hair", "smile"]
    assert not rows["twin/same.png"]["tagged"]

    missing = runner.invoke(app, ["tag", str(src), "--tagger", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "Tagger not found" in missing.output


def test_tag_cli_warns_once_about_unmapped_tags(tmp_path):
    src = tmp_path / "faces"
    _colour_faces(src)
    folder = _danbooru_folder(tmp_path / "dd")
    args = ["tag", str(src), "--tagger", str(folder), "--out", str(tmp_path / "l.csv")]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.count("no DeepDanbooru counterpart") == 1
    assert "gray hair          4" in result.output


def _record_images(out):
    faces = {}
    for path in sorted(out.glob("faces-*.tfrecord")):
        for record in tfrecords.iter_records(path):
            face = tfrecords.decode_example(record)
            pixels = cv2.imdecode(np.frombuffer(face["image"], np.uint8), cv2.IMREAD_COLOR)
            faces[face["id"]] = (pixels[..., ::-1], face["tags"], face["tagged"])
    return faces


def test_prepare_with_a_tagger_tags_the_unlabelled_faces(tmp_path):
    src = tmp_path / "faces"
    src.mkdir()
    for i in range(7):
        Image.fromarray(_tinted(RED if i % 2 else BLUE, i)).save(src / f"f{i}.png")
    labels = tmp_path / "labels.csv"
    columns = [n.replace(" ", "_") for n in PAPER_TAGS.names]
    vector = PAPER_TAGS.parse("pink hair, hat").astype(int)
    labels.write_text(f"filename,{','.join(columns)}\nf3.png,{','.join(map(str, vector))}\n")
    run = _colour_tagger(tmp_path / "run")
    tagger = Tagger(run, batch_size=2)
    options = dict(faces=True, size=32, labels=labels, workers=0, progress=False, shard_size=3)
    stats = prepare(src, tmp_path / "out", tagger=tagger, **options)
    assert stats["faces"] == 7 and stats["untagged"] == 0

    manifest = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    faces = _record_images(tmp_path / "out")
    by_source = {row["source"]: row for row in manifest}
    assert by_source["f3.png"]["tags"] == ["pink hair", "hat"]
    assert by_source["f3.png"]["tagged_by"] == "labels"
    assert by_source["f1.png"]["tags"] == ["red hair", "smile"]
    assert by_source["f0.png"]["tags"] == ["blue hair", "blue eyes", "smile"]
    tagged = [row for row in manifest if row["source"] != "f3.png"]
    expected = tagger.tags([faces[row["id"]][0] for row in tagged])
    for row, tags in zip(tagged, expected):
        assert row["tagged"] and row["tagged_by"] == "tagger"
        np.testing.assert_array_equal(faces[row["id"]][1], tags)
        assert faces[row["id"]][2] == 1

    # the batch size does not change the result: inputs are handled in order
    prepare(src, tmp_path / "one-batch", tagger=Tagger(run, batch_size=64), **options)
    assert read_jsonl(tmp_path / "one-batch" / "manifest.jsonl") == manifest

    settings = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert settings["tagger"] == tagger.fingerprint and settings["tagger_path"].endswith(
        "tagger.keras"
    )
    prepare(src, tmp_path / "out", tagger=Tagger(run), **options)  # the same tagger: resumes
    with pytest.raises(TypeError, match="Tagger\\(path\\)"):
        prepare(src, tmp_path / "out", tagger=run, **options)
    with pytest.raises(ValueError, match="other options.*tagger: .*tagger.keras \\(sha256"):
        prepare(src, tmp_path / "out", tagger=Tagger(run, threshold=0.9), **options)
    with pytest.raises(ValueError, match="tagger: .* before, None now"):
        prepare(src, tmp_path / "out", **options)


def test_prepare_with_a_tagger_and_no_labels_may_require_tags(tmp_path):
    src = tmp_path / "faces"
    src.mkdir()
    for i in range(3):
        Image.fromarray(_tinted(RED, i)).save(src / f"f{i}.png")
    stats = prepare(
        src, tmp_path / "out", faces=True, size=32, tagger=Tagger(_colour_tagger(tmp_path / "run")),
        allow_untagged=False, workers=0, progress=False,
    )  # fmt: skip
    assert stats["faces"] == 3 and stats["tags"]["red hair"] == 3 and stats["untagged"] == 0
    tags = {tuple(row["tags"]) for row in read_jsonl(tmp_path / "out" / "manifest.jsonl")}
    assert tags == {("red hair", "smile")}


@pytest.mark.large
def test_a_tagger_trained_on_procedural_faces_tags_a_folder(tmp_path):
    from kanime.data.procedural import make_faces
    from kanime.recipe import TaggerRecipe, recipe_from_dict
    from kanime.tagger import fit_tagger

    recipe = {
        "data": {"num_images": 256},
        "model": {"resolution": 32, "channels": 8},
        "training": {"batch_size": 32, "steps": 100},
        "logging": {"log_every": 50, "backup_every": 100},
    }
    run = tmp_path / "run"
    fit_tagger(recipe_from_dict(recipe, recipe_type=TaggerRecipe), run, progress=False)
    images, _ = make_faces(6, 32, seed=11)
    src = tmp_path / "faces"
    src.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(src / f"face{i}.png")
    tagger = Tagger(run)
    assert tagger.threshold == 0.5 and tagger.image_size == (32, 32)
    result = tag_folder(src, tagger, tmp_path / "labels.csv", progress=False)
    assert result["faces"] == 6 and result["skipped"] == []
    # the same scores and rule as fit_tagger's evaluation
    model = keras.saving.load_model(run / "tagger.keras")
    scores = model.predict(images.astype("float32") / 127.5 - 1.0, verbose=0)
    np.testing.assert_allclose(tagger.scores(images), scores, atol=1e-5)
    expected = PAPER_TAGS.from_scores(scores, threshold=0.5)
    table = read_labels(tmp_path / "labels.csv")
    for i in range(6):
        np.testing.assert_array_equal(table[f"face{i}.png"], expected[i])
