"""`kanime generate`: seed parsing, file names, determinism, grid shapes and bad input."""

import re
import shlex

import cv2
import numpy as np
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from kanime.cli import app
from kanime.images import image_grid
from kanime.inference import CharacterGenerator
from kanime.interpolation import slerp
from kanime.models import Generator
from kanime.models.export import save_model_atomic
from kanime.viz.generate import (
    MAX_SEEDS,
    format_seeds,
    image_filename,
    labelled_grid,
    parse_seeds,
    seed_interpolation_plan,
    tag_interpolation_plan,
    tags_slug,
    vary_plan,
)

runner = CliRunner()
TILE = 32 + 2  # a 32-pixel image and the grid's 2-pixel padding


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    model = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1, upsample_channels=16)
    path = tmp_path_factory.mktemp("run") / "generator.keras"
    save_model_atomic(model, path)
    return path


@pytest.fixture(scope="module")
def characters(generator_file):
    return CharacterGenerator.load(generator_file)


@pytest.fixture
def loaded_once(monkeypatch, characters):
    """Makes the command reuse the loaded tiny generator instead of reading the file again."""
    load = classmethod(lambda cls, path, engine: characters)
    monkeypatch.setattr(CharacterGenerator, "load", load)


def cli(*args):
    result = runner.invoke(app, ["generate", *map(str, args), "--no-progress"])
    return result


def read_rgb(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image[..., ::-1]


def written(result):
    assert result.exit_code == 0, result.output
    return [line.removeprefix("Wrote ") for line in result.output.splitlines() if "Wrote " in line]


# --- pure functions -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, seeds",
    [
        ("0-15", list(range(16))),
        ("3,7,9", [3, 7, 9]),
        ("0-3,10", [0, 1, 2, 3, 10]),
        (" 4 , 2-3 ", [4, 2, 3]),
        ("7,7,6-8", [7, 6, 8]),
        ("5-5", [5]),
    ],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "integers >= 0"),
        ("1,,2", "integers >= 0"),
        ("abc", "'abc' is neither a seed"),
        ("-3", "'-3' is neither a seed"),
        ("1.5", "'1.5' is neither a seed"),
        ("9-3", "runs backwards"),
        (f"0-{MAX_SEEDS}", f"more than {MAX_SEEDS} seeds"),
        ("0-99999999999999999999999", "below 2**63"),
    ],
)
def test_bad_seeds_are_clear_errors(text, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_seeds(text)


def test_format_seeds_inverts_parse_seeds():
    for text in ["0-15", "3,7,9", "0-3,10", "12"]:
        assert format_seeds(parse_seeds(text)) == text


def test_file_names_from_seed_and_tags():
    assert image_filename(3, ["blonde hair", "blue eyes"]) == "seed0003_blonde-hair_blue-eyes.png"
    assert image_filename(123456, []) == "seed123456.png"
    assert tags_slug(["Open Mouth", "hat/cap"]) == "open-mouth_hat-cap"
    many = [f"tag number {i}" for i in range(30)]
    slug = tags_slug(many)
    assert len(slug) < 40 and slug.startswith("30-tags-")
    assert tags_slug(many[:-1] + ["other"]) != slug


def test_slerp_endpoints_are_the_seeds_noise(characters):
    plan = seed_interpolation_plan(characters, 3, 9, steps=7, tags="blonde hair")
    z3, z9 = characters.noise([3, 9])
    assert plan.z.shape == (7, characters.latent_dim)
    np.testing.assert_array_equal(plan.z[0], z3)
    np.testing.assert_array_equal(plan.z[-1], z9)
    assert not np.allclose(plan.z[3], z3) and not np.allclose(plan.z[3], z9)
    # The tags are held fixed along a seed interpolation.
    np.testing.assert_array_equal(plan.tags, characters.tag_vectors("blonde hair", 7))


def test_slerp_keeps_the_length_where_a_straight_line_does_not():
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0])
    path = slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(path[2], [3 / np.sqrt(2), 0, 3 / np.sqrt(2)], rtol=1e-6)
    # Parallel vectors fall back to a straight line.
    np.testing.assert_allclose(slerp(a, 2 * a, [0.5])[0], 1.5 * a, rtol=1e-6)


def test_vary_plan_rows_share_noise_and_fixed_tags(characters):
    vocabulary = characters.vocabulary
    plan = vary_plan(characters, "hair color", "0-2", "red hair, blue eyes, smile")
    assert (plan.rows, plan.cols) == (13, 3)
    assert plan.row_labels[0] == "blonde hair" and len(plan.row_labels) == 13
    assert plan.filename == "vary-hair-color_seeds0-2_blue-eyes_smile.png"
    z = plan.z.reshape(13, 3, -1)
    for row in z:
        np.testing.assert_array_equal(row, characters.noise([0, 1, 2]))
    for r, label in enumerate(plan.row_labels):
        for c in range(3):
            asked = vocabulary.decode(plan.tags[r * 3 + c])
            assert asked == [label, "blue eyes", "smile"]


def test_tag_interpolation_plan_runs_from_one_tag_set_to_the_other(characters):
    plan = tag_interpolation_plan(characters, "4,5", "blonde hair", "red hair, smile", steps=5)
    assert (plan.rows, plan.cols) == (2, 5)
    assert plan.row_labels == ["seed 4", "seed 5"]
    tags = plan.tags.reshape(2, 5, -1)
    np.testing.assert_array_equal(tags[:, 0], characters.tag_vectors("blonde hair", 2))
    np.testing.assert_array_equal(tags[:, -1], characters.tag_vectors("red hair, smile", 2))
    np.testing.assert_allclose(tags[0, 2, :2], [0.5, 0.0])  # halfway: blonde 0.5
    z = plan.z.reshape(2, 5, -1)
    np.testing.assert_array_equal(z[1], np.repeat(characters.noise([5]), 5, axis=0))


def test_labelled_grid_puts_labels_in_a_left_margin():
    images = np.full((4, 8, 8, 3), 100, "uint8")
    plain = labelled_grid(images, 2, 2, scale=2)
    assert plain.shape == (2 * 18 + 2, 2 * 18 + 2, 3)
    labelled = labelled_grid(images, 2, 2, ["blonde hair", "red"], scale=2)
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 20
    np.testing.assert_array_equal(labelled[:, margin:], plain)
    assert (labelled[:, :margin] < 128).any()  # some text was drawn
    with pytest.raises(ValueError, match="Expected 2 row labels"):
        labelled_grid(images, 2, 2, ["one"])


# --- the command --------------------------------------------------------------


def test_generate_is_deterministic_across_invocations(tmp_path, generator_file):
    first = written(
        cli(
            generator_file,
            "--tags",
            "blonde hair, blue eyes",
            "--seeds",
            "0-3",
            "--out",
            tmp_path / "a",
        )
    )
    # Same seeds and tags, the tags in another order, in a second invocation.
    second = written(
        cli(
            generator_file,
            "--tags",
            "Blue Eyes,blonde hair",
            "--seeds",
            "0-3",
            "--out",
            tmp_path / "b",
        )
    )
    names = [p.rsplit("/", 1)[-1] for p in first]
    assert names == [f"seed000{s}_blonde-hair_blue-eyes.png" for s in range(4)]
    assert [p.rsplit("/", 1)[-1] for p in second] == names
    for a, b in zip(first, second):
        assert (tmp_path / "a").joinpath(a.rsplit("/", 1)[-1]).read_bytes() == (
            tmp_path / "b"
        ).joinpath(b.rsplit("/", 1)[-1]).read_bytes()
    # A seed asked alone gives the pixels it gives among other seeds.
    alone = written(
        cli(
            generator_file,
            "--tags",
            "blonde hair, blue eyes",
            "--seeds",
            "2",
            "--out",
            tmp_path / "c",
        )
    )
    np.testing.assert_array_equal(read_rgb(alone[0]), read_rgb(first[2]))


def test_seeds_and_tags_change_the_image(tmp_path, generator_file, characters, loaded_once):
    paths = written(
        cli(generator_file, "--tags", "blonde hair", "--seeds", "0,1", "--out", tmp_path)
    )
    zero, one = (read_rgb(p) for p in paths)
    assert zero.shape == (32, 32, 3)
    assert not np.array_equal(zero, one)
    # The asked tags reach the generator: the same seed with other tags differs.
    red = written(cli(generator_file, "--tags", "red hair", "--seeds", "0", "--out", tmp_path))
    assert not np.array_equal(read_rgb(red[0]), zero)
    # The file holds exactly what the Python API makes.
    np.testing.assert_array_equal(zero, characters.generate([0], "blonde hair")[0])


def test_engine_option_picks_what_runs_the_generator(tmp_path, generator_file, characters):
    # On this CPU with TensorFlow the default is TensorFlow Lite; Keras's XLA model makes
    # the same images, up to one level of 255 from float32 rounding.
    assert characters.engine == "tflite"
    images = {}
    for engine in ("auto", "keras", "tflite"):
        out = tmp_path / engine
        paths = written(cli(generator_file, "--seeds", "0-3", "--engine", engine, "--out", out))
        images[engine] = np.stack([read_rgb(p) for p in paths]).astype(int)
    np.testing.assert_array_equal(images["auto"], images["tflite"])
    assert np.abs(images["keras"] - images["tflite"]).max() <= 1
    result = cli(generator_file, "--engine", "onnx", "--out", tmp_path)
    assert result.exit_code == 2 and "onnx" in result.output


def grid_part(image, rows, cols, tile):
    """The image tiles of a labelled grid (its right-hand part, without the label margin)."""
    width = cols * tile + 2
    assert image.shape[0] == rows * tile + 2
    assert image.shape[1] > width  # a label margin on the left
    return image[:, -width:]


def test_vary_grid_shape_and_content(tmp_path, generator_file, characters):
    paths = written(
        cli(
            generator_file,
            "--tags",
            "blue eyes",
            "--vary",
            "eye_color",
            "--seeds",
            "0-2",
            "--out",
            tmp_path,
        )
    )
    assert paths == [str(tmp_path / "vary-eye-color_seeds0-2.png")]
    grid = grid_part(read_rgb(paths[0]), rows=10, cols=3, tile=TILE)
    plan = vary_plan(characters, "eye_color", [0, 1, 2])
    np.testing.assert_array_equal(grid, image_grid(characters(plan.z, plan.tags), 10, 3))
    # Row 4 asks for the fourth eye colour and column 1 uses seed 1's noise.
    tile = grid[2 + 3 * TILE : 2 + 3 * TILE + 32, 2 + TILE : 2 + TILE + 32]
    np.testing.assert_array_equal(tile, characters.generate([1], "green eyes")[0])


def test_interpolation_grid_shapes(tmp_path, generator_file, characters, loaded_once):
    seeds = written(cli(generator_file, "--interpolate", "3,9", "--steps", "5", "--out", tmp_path))
    assert seeds == [str(tmp_path / "interpolate_seed0003_to_seed0009.png")]
    row = grid_part(read_rgb(seeds[0]), rows=1, cols=5, tile=TILE)
    np.testing.assert_array_equal(row[2:34, 2:34], characters.generate([3])[0])
    np.testing.assert_array_equal(row[2:34, -34:-2], characters.generate([9])[0])

    tags = written(
        cli(
            generator_file,
            "--tags",
            "blonde hair",
            "--to-tags",
            "red hair",
            "--seeds",
            "0-2",
            "--scale",
            "2",
            "--out",
            tmp_path,
        )
    )
    assert tags == [str(tmp_path / "interpolate_blonde-hair_to_red-hair_seeds0-2.png")]
    grid_part(read_rgb(tags[0]), rows=3, cols=8, tile=2 * 32 + 2)

    both = written(
        cli(
            generator_file,
            "--tags",
            "blonde hair",
            "--to-tags",
            "red hair",
            "--interpolate",
            "1,2",
            "--steps",
            "3",
            "--out",
            tmp_path,
        )
    )
    assert both == [str(tmp_path / "interpolate_seed0001_blonde-hair_to_seed0002_red-hair.png")]
    row = grid_part(read_rgb(both[0]), rows=1, cols=3, tile=TILE)
    np.testing.assert_array_equal(row[2:34, -34:-2], characters.generate([2], "red hair")[0])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--tags", "blond hair"], "Did you mean 'blonde hair'"),
        (["--tags", "blonde hair, red hair"], "exclusive group 'hair_color'"),
        (["--seeds", "3-1"], "runs backwards"),
        (["--seeds", "-4"], "'-4' is neither a seed"),
        (["--vary", "hair"], "Expected one of: hair_color, eye_color, hair_style, other"),
        (["--vary", "hair_color", "--interpolate", "1,2"], "cannot be combined"),
        (["--interpolate", "1,2", "--seeds", "0-3"], "leave out --seeds"),
        (["--interpolate", "4"], "two seeds (integers >= 0) separated by a comma"),
        (["--interpolate", "1,2", "--steps", "1"], "Received: steps=1"),
        (["--steps", "4"], "use it with --interpolate or --to-tags"),
        (["--scale", "0"], "Received: 0"),
    ],
)
def test_bad_input_is_exit_code_2_with_a_clear_message(tmp_path, generator_file, args, expected):
    result = cli(generator_file, *args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not list(tmp_path.iterdir())  # nothing written


def test_missing_generator_is_exit_code_2(tmp_path):
    result = cli(tmp_path / "nope.keras", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "nope.keras" in result.output and "generator.keras" in result.output


def test_the_generation_page_shows_what_each_command_writes(tmp_path, generator_file, loaded_once):
    page = (ROOT / "docs" / "generation.md").read_text()
    examples = re.findall(r"```bash\n(kanime generate .*?)\n```\n\n```text\n(.*?)```", page, re.S)
    assert len(examples) >= 5
    for command, shown in examples:
        args = shlex.split(command)[2:]
        assert args[0] == "runs/quickstart"
        out = tmp_path / "generated"
        paths = written(cli(generator_file, *args[1:], "--out", out))
        expected = [line.removeprefix("Wrote generated/") for line in shown.splitlines()]
        assert [p.removeprefix(f"{out}/") for p in paths] == expected, command
    assert (ROOT / "docs" / "images" / "generate-vary.png").stat().st_size < 200_000
