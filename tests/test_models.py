import numpy as np
import pytest
from conftest import run_python

from kanime.models import Discriminator, Generator
from kanime.models.export import save_model_atomic
from kanime.tags import PAPER_TAGS


def small_generator(resolution=32, **kwargs):
    config = dict(channels=8, num_blocks=2, upsample_channels=32)
    config.update(kwargs)
    return Generator(resolution, **config)


def inputs(n, seed=0, tags="blonde hair, blue eyes"):
    z = np.random.default_rng(seed).standard_normal((n, 128)).astype("float32")
    return z, np.repeat(PAPER_TAGS.parse(tags)[None], n, 0)


@pytest.mark.parametrize("resolution", [32, 64])
def test_generator_shapes_and_range(resolution):
    g = small_generator(resolution)
    images = g.predict(list(inputs(3)), verbose=0)
    assert images.shape == (3, resolution, resolution, 3)
    assert np.all(np.abs(images) <= 1.0) and np.all(np.isfinite(images))


def test_paper_generator_and_discriminator_sizes():
    g, d = Generator(), Discriminator()
    assert g.output_shape == (None, 128, 128, 3)
    assert [o.shape for o in d.outputs] == [(None, 1), (None, 34)]
    # 16 residual blocks in G, 10 in D (five stages of two).
    assert sum(1 for layer in g.layers if layer.name.endswith("_add")) == 16
    assert sum(1 for layer in d.layers if layer.name.endswith("_add")) == 10
    assert d.get_layer("flatten").input.shape[1:] == (2, 2, 1024)


def test_discriminator_shapes():
    d = Discriminator(64, channels=8, blocks_per_stage=1)
    logit, tag_logits = d.predict(np.zeros((2, 64, 64, 3), "float32"), verbose=0)
    assert logit.shape == (2, 1) and tag_logits.shape == (2, 34)


def test_prelu_slopes_start_at_a_quarter_and_bn_scales_at_one():
    g = small_generator()
    slopes = [w for w in g.weights if "alpha" in w.path]
    gammas = [w for w in g.weights if w.path.endswith("gamma")]
    assert slopes and all(np.allclose(np.asarray(w), 0.25) for w in slopes)
    assert gammas and all(np.allclose(np.asarray(w), 1.0) for w in gammas)


def test_asked_tags_reach_the_generator():
    g = small_generator()
    z, blonde = inputs(2, tags="blonde hair")
    _, red = inputs(2, tags="red hair")
    a = g.predict([z, blonde], verbose=0)
    b = g.predict([z, red], verbose=0)
    assert np.abs(a - b).max() > 1e-4


def test_config_round_trip_and_bad_arguments():
    g = small_generator(tag_encoding="signed", activation="relu")
    again = Generator.from_config(g.get_config())
    assert again.get_config() == g.get_config()
    assert again.count_params() == g.count_params()
    with pytest.raises(ValueError, match="resolution"):
        Generator(48)
    with pytest.raises(ValueError, match="upsample_channels"):
        Generator(32, upsample_channels=30)
    with pytest.raises(ValueError, match="activation"):
        Generator(32, channels=8, num_blocks=1, upsample_channels=32, activation="gelu")
    with pytest.raises(ValueError, match="blocks_per_stage"):
        Discriminator(32, blocks_per_stage=0)


@pytest.mark.large
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_export_loads_with_plain_keras_in_a_fresh_process(tmp_path, backend):
    g = small_generator(tag_encoding="signed")
    z, tags = inputs(4)
    expected = g.predict([z, tags], verbose=0)
    save_model_atomic(g, tmp_path / "generator.keras")
    np.savez(tmp_path / "io.npz", z=z, tags=tags, expected=expected)
    # The user-code contract: no `import kanime`, either backend.
    code = f"""
import keras, numpy as np
io = np.load({str(tmp_path / "io.npz")!r})
gen = keras.saving.load_model({str(tmp_path / "generator.keras")!r})
images = gen.predict([io["z"], io["tags"]], verbose=0)
assert images.shape == (4, 32, 32, 3), images.shape
assert images.min() >= -1 and images.max() <= 1
np.testing.assert_allclose(images, io["expected"], atol=1e-4)
import sys; assert "kanime" not in sys.modules
print("ok")
"""
    assert "ok" in run_python(code, backend=backend).stdout


def test_icnr_upsampling_starts_without_checkerboard():
    import keras

    from kanime.models import Generator
    from kanime.models.layers import icnr_kernel

    k = keras.ops.convert_to_numpy(icnr_kernel((3, 3, 4, 16), 2, seed=0))
    for s in range(1, 4):  # every sub-pixel starts with sub-pixel 0's kernel
        np.testing.assert_array_equal(k[..., 4 * s : 4 * s + 4], k[..., 0:4])
    with pytest.raises(ValueError, match="divisible by factor"):
        icnr_kernel((3, 3, 4, 6), 2)

    g = Generator(32, channels=8, num_blocks=1, upsample_channels=32, upsample_init="icnr")
    assert Generator.from_config(g.get_config()).upsample_init == "icnr"
    # After the first upsampling each 2x2 block of the map is one value: no checkerboard.
    part = keras.Model(g.inputs, g.get_layer("upsample_0_shuffle_merge").output)
    z = np.random.default_rng(0).standard_normal((2, 128)).astype("float32")
    out = part.predict([z, np.zeros((2, 34), "float32")], verbose=0)
    np.testing.assert_allclose(out[:, 0::2, 0::2], out[:, 1::2, 1::2], rtol=1e-5, atol=1e-6)
    plain = Generator(32, channels=8, num_blocks=1, upsample_channels=32)
    part = keras.Model(plain.inputs, plain.get_layer("upsample_0_shuffle_merge").output)
    out = part.predict([z, np.zeros((2, 34), "float32")], verbose=0)
    assert not np.allclose(out[:, 0::2, 0::2], out[:, 1::2, 1::2], atol=1e-3)
    with pytest.raises(ValueError, match="upsample_init"):
        Generator(32, upsample_init="zeros")


def test_resize_upsampling_generator_runs_everywhere_the_plain_one_does(tmp_path):
    import keras

    from kanime.inference import CharacterGenerator
    from kanime.models import Generator

    g = Generator(32, channels=8, num_blocks=1, upsample_channels=32, upsample="resize")
    assert g.get_layer("resize_0_conv").filters == 8  # a quarter of upsample_channels
    assert Generator.from_config(g.get_config()).upsample == "resize"
    z = np.random.default_rng(0).standard_normal((2, 128)).astype("float32")
    tags = np.zeros((2, 34), "float32")
    expected = g.predict([z, tags], verbose=0)
    assert expected.shape == (2, 32, 32, 3)
    # The engines that rewrite sub-pixel blocks leave it alone and give its own output.
    characters = CharacterGenerator(g)
    assert characters.engine == "keras"
    want = np.round((expected + 1) * 127.5)
    np.testing.assert_allclose(characters(z, tags).astype("float32"), want, atol=1)
    save_model_atomic(g, tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(loaded.predict([z, tags], verbose=0), expected, atol=1e-6)
    with pytest.raises(ValueError, match="upsample_init='icnr'"):
        Generator(32, upsample="resize", upsample_init="icnr")


def test_a_generator_file_carries_its_vocabulary(tmp_path):
    import keras

    from kanime.inference import CharacterGenerator
    from kanime.models import Generator
    from kanime.models.export import read_metadata
    from kanime.tags import TagGroup, TagVocabulary

    vocabulary = TagVocabulary([
        TagGroup("color", ("red hair", "blue hair"), exclusive=True, sampling="one"),
        TagGroup("other", ("hat",)),
    ])  # fmt: skip
    g = Generator(32, latent_dim=8, num_tags=3, channels=8, num_blocks=1, upsample_channels=16)
    alone = tmp_path / "alone"  # no recipe.yaml beside it
    alone.mkdir()
    save_model_atomic(g, alone / "g.keras", metadata={"vocabulary": vocabulary.get_config()})
    assert TagVocabulary.from_config(read_metadata(alone / "g.keras")["vocabulary"]) == vocabulary
    assert keras.saving.load_model(alone / "g.keras").count_params() == g.count_params()
    characters = CharacterGenerator.load(alone / "g.keras")
    assert characters.vocabulary == vocabulary
    assert characters.generate([0], "blue hair, hat").shape == (1, 32, 32, 3)

    # Without a stored vocabulary a 3-tag file has nothing to go by, and says so.
    save_model_atomic(g, alone / "bare.keras")
    assert read_metadata(alone / "bare.keras") is None
    with pytest.raises(ValueError, match="stores no vocabulary"):
        CharacterGenerator.load(alone / "bare.keras")
    wrong = {"vocabulary": TagVocabulary([TagGroup("x", ("hat",))]).get_config()}
    save_model_atomic(g, alone / "wrong.keras", metadata=wrong)
    with pytest.raises(ValueError, match="stored vocabulary has 1 tags; the model takes 3"):
        CharacterGenerator.load(alone / "wrong.keras")
