import doctest
import os

import pytest
import yaml

import kanime.recipe
from kanime.recipe import (
    Recipe,
    RecipeError,
    apply_overrides,
    dump_recipe,
    load_recipe,
    recipe_from_dict,
)
from kanime.tags import PAPER_TAGS

CUSTOM_TAGS = {
    "groups": [
        {
            "name": "hair",
            "tags": ["blonde hair", "black hair"],
            "exclusive": True,
            "sampling": "one",
        },
        {"name": "other", "tags": ["smile"]},
    ]
}


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def raises(mapping, *fragments):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(mapping, source="test.yaml")
    message = str(info.value)
    for fragment in ("test.yaml", *fragments):
        assert fragment in message, message
    return message


def test_docstring_examples():
    assert doctest.testmod(kanime.recipe).failed == 0


def test_docstring_yaml_example_is_a_valid_recipe(tmp_path):
    example = kanime.recipe.__doc__.split("```yaml")[1].split("```")[0]
    recipe = load_recipe(write(tmp_path, example))
    assert recipe.run_name(0) == "00000-quickstart-32-b64"
    assert recipe.training.learning_rate == 2e-4
    assert recipe.model.generator.num_blocks == 4


def test_defaults_are_the_papers():
    recipe = recipe_from_dict({})
    assert recipe == Recipe()
    assert recipe.training.learning_rate == 2e-4
    assert recipe.training.lambda_adv == 34.0
    assert recipe.model.generator.num_blocks == 16
    assert recipe.training.jit_compile == "auto"
    assert recipe.training.mixed_precision is None
    assert recipe.vocabulary is PAPER_TAGS


def test_round_trip_dict_and_file(tmp_path):
    recipe = recipe_from_dict(
        {
            "name": "custom",
            "seed": 3,
            "tags": CUSTOM_TAGS,
            "data": {"source": "tfrecord", "path": "shards/*.tfrecord", "flip": False},
            "model": {"resolution": 64, "generator": {"activation": "relu"}},
            "training": {
                "jit_compile": False,
                "mixed_precision": "mixed_bfloat16",
                "learning_rate": 1e-5,
            },
        }
    )
    assert recipe_from_dict(recipe.to_dict()) == recipe
    path = tmp_path / "saved.yaml"
    dump_recipe(recipe, path)
    assert load_recipe(path) == recipe
    assert yaml.safe_load(path.read_text()) == recipe.to_dict()
    assert os.listdir(tmp_path) == ["saved.yaml"]  # no temporary file left behind
    assert len(recipe.vocabulary) == 3
    assert recipe.vocabulary.names == ("blonde hair", "black hair", "smile")


def test_partial_recipe_gets_defaults(tmp_path):
    path = write(tmp_path, "name: small\ntraining:\n  batch_size: 16\nmodel: {resolution: 32}\n")
    recipe = load_recipe(path)
    assert recipe.name == "small"
    assert recipe.training.batch_size == 16
    assert recipe.training.steps == 100000
    assert recipe.model.resolution == 32
    assert recipe.model.discriminator.channels == 32
    assert recipe.logging == Recipe().logging
    assert load_recipe(write(tmp_path, "", "empty.yaml")) == Recipe()


def test_float_fields_accept_yaml_exponent_strings_and_ints(tmp_path):
    path = write(tmp_path, "training:\n  learning_rate: 2e-4\n  lambda_adv: 10\n")
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "2e-4"
    recipe = load_recipe(path, ["training.beta_2=9e-1"])
    assert recipe.training.learning_rate == 2e-4
    assert recipe.training.lambda_adv == 10.0
    assert isinstance(recipe.training.lambda_adv, float)
    assert recipe.training.beta_2 == 0.9


def test_unknown_keys_suggest_the_closest():
    message = raises(
        {"training": {"batchsize": 8}},
        "`training.batchsize`",
        "training.batch_size",
        "steps",
        "learning_rate",
    )
    assert "Did you mean" in message
    raises({"trainig": {}}, "`trainig`", "Did you mean `training`", "logging")
    raises(
        {"model": {"generator": {"chanels": 8}}},
        "`model.generator.chanels`",
        "`model.generator.channels`",
    )


@pytest.mark.parametrize(
    "mapping, key, expected",
    [
        ({"training": {"batch_size": True}}, "training.batch_size", "an integer"),
        ({"training": {"batch_size": "64"}}, "training.batch_size", "an integer"),
        ({"training": {"steps": 1.5}}, "training.steps", "an integer"),
        ({"seed": None}, "seed", "an integer"),
        ({"training": {"learning_rate": True}}, "training.learning_rate", "number"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate", "number"),
        ({"training": {"lambda_gp": ".inf"}}, "training.lambda_gp", "finite number"),
        ({"data": {"flip": "yes"}}, "data.flip", "a boolean"),
        ({"data": {"flip": 1}}, "data.flip", "a boolean"),
        ({"data": {"path": 3}}, "data.path", "a string or null"),
        ({"name": 7}, "name", "a string"),
        ({"training": 5}, "training", "a mapping"),
        ({"model": {"generator": ["channels"]}}, "model.generator", "a mapping"),
    ],
)
def test_wrong_types(mapping, key, expected):
    raises(mapping, f"`{key}`", expected, "Received")


def test_recipe_must_be_a_mapping(tmp_path):
    with pytest.raises(RecipeError, match="a mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    "mapping, key, allowed",
    [
        ({"data": {"source": "folder"}}, "data.source", ["'procedural'", "'tfrecord'"]),
        ({"model": {"tag_encoding": "onehot"}}, "model.tag_encoding", ["'binary'", "'signed'"]),
        (
            {"model": {"generator": {"activation": "gelu"}}},
            "model.generator.activation",
            ["'prelu'", "'relu'"],
        ),
        ({"training": {"fake_tags": "random"}}, "training.fake_tags", ["'paper'", "'data'"]),
        (
            {"training": {"mixed_precision": "float16"}},
            "training.mixed_precision",
            ["'mixed_bfloat16'", "'mixed_float16'", "null"],
        ),
        ({"training": {"jit_compile": "sometimes"}}, "training.jit_compile", ["'auto'", "boolean"]),
    ],
)
def test_invalid_choices(mapping, key, allowed):
    raises(mapping, f"`{key}`", *allowed)


@pytest.mark.parametrize(
    "section, field, value, expected",
    [
        ("training", "batch_size", 0, ">= 1"),
        ("training", "steps", -5, ">= 1"),
        ("data", "num_images", 0, ">= 1"),
        ("model", "latent_dim", 0, ">= 1"),
        ("model", "resolution", 48, "power of two"),
        ("model", "resolution", 512, "power of two"),
        ("model", "resolution", 16, "power of two"),
        ("training", "learning_rate", 0, "> 0"),
        ("training", "beta_1", 1.0, "[0, 1)"),
        ("training", "beta_2", -0.1, "[0, 1)"),
        ("training", "lr_decay_factor", 0, "(0, 1]"),
        ("training", "lr_decay_factor", 1.5, "(0, 1]"),
        ("training", "lambda_adv", -1, ">= 0"),
        ("training", "lambda_gp", -0.5, ">= 0"),
        ("training", "ema_half_life_images", -1, ">= 0"),
        ("logging", "grid_size", 0, ">= 1"),
        ("logging", "export_every", 0, ">= 1"),
    ],
)
def test_ranges(section, field, value, expected):
    raises({section: {field: value}}, f"`{section}.{field}`", expected, str(value))


@pytest.mark.parametrize(
    "section, field",
    [
        ("model.generator", "channels"),
        ("model.generator", "num_blocks"),
        ("model.discriminator", "channels"),
        ("model.discriminator", "blocks_per_stage"),
    ],
)
def test_nested_ranges(section, field):
    outer, inner = section.split(".")
    raises({outer: {inner: {field: 0}}}, f"`{section}.{field}`", ">= 1")


def test_range_edges_are_accepted():
    recipe = recipe_from_dict(
        {
            "training": {
                "beta_1": 0,
                "lr_decay_factor": 1,
                "lambda_gp": 0,
                "ema_half_life_images": 0,
            },
            "model": {"resolution": 256},
        }
    )
    assert recipe.training.ema_half_life_images == 0.0
    assert recipe_from_dict({"model": {"resolution": 32}}).model.resolution == 32


def test_tags():
    raises({"tags": "danbooru"}, "`tags`", "'paper'")
    message = raises(
        {"tags": {"groups": [{"name": "a", "tags": ["x"], "colour": 1}]}},
        "`tags`",
        "TagVocabulary.from_config",
    )
    assert "colour" in message  # the wrapped error from from_config
    raises({"tags": {"hair": ["blonde hair"]}}, "`tags`", "groups")
    raises({"tags": {"groups": [{"name": "a", "tags": []}]}}, "`tags`")
    raises({"tags": {"groups": [1]}}, "`tags`")


def test_overrides_return_a_new_recipe():
    recipe = Recipe()
    new = apply_overrides(
        recipe,
        [
            "training.batch_size=128",
            "model.generator.activation=relu",
            "data.path=null",
            "training.jit_compile=false",
            "name=big run",
            "model.discriminator={channels: 16}",
            "tags={groups: [{name: g, tags: [smile, hat]}]}",
        ],
    )
    assert recipe == Recipe()
    assert new.training.batch_size == 128
    assert new.model.generator.activation == "relu"
    assert new.data.path is None
    assert new.training.jit_compile is False
    assert new.model.discriminator.channels == 16
    assert new.model.discriminator.blocks_per_stage == 2  # a section mapping is merged
    assert new.vocabulary.names == ("smile", "hat")
    assert new.run_name(12) == "00012-big-run-128-b128"


def test_overrides_are_validated():
    def fails(override, *fragments):
        with pytest.raises(RecipeError) as info:
            apply_overrides(Recipe(), [override])
        for fragment in ("--set", *fragments):
            assert fragment in str(info.value), str(info.value)

    fails("training.batchsize=8", "`training.batchsize`", "training.batch_size")
    fails("nope.batch_size=8", "`nope`", "training")
    fails("training.batch_size=true", "`training.batch_size`", "an integer")
    fails("training.batch_size=0", "`training.batch_size`", ">= 1")
    fails("model.generator.activation=gelu", "`model.generator.activation`", "'prelu'")
    fails("model.generator={chanels: 8}", "`model.generator.chanels`", "channels")
    fails("model=3", "`model`", "a mapping")
    fails("tags.groups=[]", "`tags`", "not a section")
    fails("training.batch_size", "--set key.path=value")
    fails("=3", "--set key.path=value")
    fails("name=[oops", "`name`", "YAML")


def test_overrides_on_load(tmp_path):
    path = write(tmp_path, "training: {batch_size: 16}\n")
    recipe = load_recipe(path, ["training.batch_size=32", "training.learning_rate=1e-3"])
    assert recipe.training.batch_size == 32
    assert recipe.training.learning_rate == 1e-3
    with pytest.raises(RecipeError, match="--set.*training.steps"):
        load_recipe(path, ["training.steps=many"])


def test_file_errors(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RecipeError, match="not found") as info:
        load_recipe(missing)
    assert str(missing) in str(info.value)
    bad = write(tmp_path, "name: x\ntraining:\n  batch_size: [1, 2\n", "bad.yaml")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    assert str(bad) in str(info.value)
    assert "line" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, "training:\n  steps: -1\n", "range.yaml"))
    assert "range.yaml" in str(info.value) and "`training.steps`" in str(info.value)


def test_tfrecord_requires_a_path(tmp_path):
    raises({"data": {"source": "tfrecord"}}, "`data.path`", "tfrecord", "set it")
    path = write(tmp_path, "data: {source: tfrecord}\n")
    with pytest.raises(RecipeError, match="data.path"):
        load_recipe(path)
    recipe = load_recipe(path, ["data.path=relative/shards"])
    assert recipe.data.path == "relative/shards"  # kept as written, not resolved
    with pytest.raises(RecipeError, match="data.path"):
        apply_overrides(recipe, ["data.path=null"])
    assert apply_overrides(recipe, ["data.source=procedural", "data.path=null"]).data.path is None


def test_run_name():
    recipe = recipe_from_dict({"name": "quickstart", "model": {"resolution": 32}})
    assert recipe.run_name(3) == "00003-quickstart-32-b64"
    assert recipe.run_name(123456) == "123456-quickstart-32-b64"
    with pytest.raises(ValueError):
        recipe.run_name(-1)


def test_issue_14_keys_are_checked():
    from kanime.recipe import Recipe, RecipeError, apply_overrides

    r = apply_overrides(
        Recipe(),
        ["training.augment=translation+cutout", "training.tag_loss=grouped",
         "training.penalty=r1", "training.stop_gp_above=null",
         "model.generator.upsample_init=icnr"],
    )  # fmt: skip
    assert r.training.augment == "translation+cutout" and r.training.stop_gp_above is None
    for bad, key in [
        ("training.augment=hue", "training.augment"),
        ("training.tag_loss=softmax", "training.tag_loss"),
        ("training.penalty=wgan", "training.penalty"),
        ("training.d_learning_rate=0", "training.d_learning_rate"),
        ("training.lambda_tag=-1", "training.lambda_tag"),
        ("model.generator.upsample_init=zeros", "model.generator.upsample_init"),
    ]:
        with pytest.raises(RecipeError, match=f"`{key}` expected"):
            apply_overrides(Recipe(), [bad])
