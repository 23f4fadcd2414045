"""The inference rewrite of the generator: same images, built-in layers, clear refusals."""

import keras
import numpy as np
import pytest
from conftest import run_python

from kanime.inference import CharacterGenerator
from kanime.inference.fused import NotFusableError, fuse_generator, space_to_depth_kernel
from kanime.models import Generator
from kanime.models.export import save_model_atomic
from kanime.models.layers import pixel_shuffle


def trained_looking(model, seed=0):
    """Gives `model`'s batch norms and PReLUs the non-trivial values training would."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.3, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.3, 3, shape).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, shape).astype("float32"))
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(-0.2, 0.6, layer.alpha.shape).astype("float32"))
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def inputs(model, n=3, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, model.inputs[0].shape[-1])).astype("float32")
    tags = (rng.uniform(size=(n, model.inputs[1].shape[-1])) > 0.7).astype("float32")
    return [z, tags]


def small(**kwargs):
    config = dict(resolution=32, latent_dim=16, channels=8, num_blocks=2, upsample_channels=16)
    return trained_looking(Generator(**{**config, **kwargs}))


@pytest.mark.parametrize("subpixel_rgb", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"activation": "relu"}, {"tag_encoding": "signed"}, {"resolution": 64, "num_blocks": 1}],
)
def test_fused_generator_makes_the_same_images(kwargs, subpixel_rgb):
    model = small(**kwargs)
    x = inputs(model)
    fused = fuse_generator(model, subpixel_rgb=subpixel_rgb)
    expected = np.asarray(model.predict_on_batch(x))
    got = np.asarray(fused.predict_on_batch(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5)
    # The rewrite has no batch norm after a convolution, its 3x3 convolutions (2 per
    # residual block, 1 per upsampling) are plain ones, and the RGB convolution's shape
    # says which form it took.
    kinds = [type(layer).__name__ for layer in fused.layers]
    assert kinds.count("BatchNormalization") == 1  # the trunk's, which follows an Add
    num_3x3 = 2 * model.num_blocks + 3  # resolution / 8, upsampled 3 times
    assert kinds.count("Conv2D") == num_3x3 + 1
    assert fused.get_layer("to_rgb").kernel.shape == (
        (5, 5, 16, 12) if subpixel_rgb else (9, 9, 4, 3)
    )


def test_the_comparison_above_can_fail():
    # A fused copy of another generator's weights differs: the tolerance is not loose.
    model, other = small(), trained_looking(small(), seed=5)
    x = inputs(model)
    diff = np.abs(np.asarray(fuse_generator(other).predict_on_batch(x)) - model.predict_on_batch(x))
    assert diff.max() > 1e-2


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_space_to_depth_kernel_is_exact(k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    kernel = rng.standard_normal((k, k, 3, 2)).astype("float32")
    direct = keras.ops.conv(x, kernel, padding="same")
    # x as its space-to-depth map: the inverse of pixel_shuffle's layout.
    sub = x.reshape(2, 4, 2, 4, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 4, 12)
    np.testing.assert_array_equal(pixel_shuffle_array(sub), x)
    small_kernel = space_to_depth_kernel(kernel)
    assert small_kernel.shape == (2 * -(-(k // 2) // 2) + 1,) * 2 + (12, 8)
    rewritten = pixel_shuffle_array(keras.ops.conv(sub, small_kernel, padding="same"))
    np.testing.assert_allclose(rewritten, keras.ops.convert_to_numpy(direct), atol=1e-4)


def pixel_shuffle_array(x):
    """`pixel_shuffle` by 2 of an array, through a functional model of it."""
    x = keras.ops.convert_to_numpy(x)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, pixel_shuffle(inp, 2, name="shuffle"))
    return np.asarray(model.predict_on_batch(x))


def test_space_to_depth_kernel_refuses_an_even_kernel():
    with pytest.raises(ValueError, match=r"odd side.*\(4, 4, 1, 1\)"):
        space_to_depth_kernel(np.ones((4, 4, 1, 1), "float32"))


def test_an_exported_generator_fuses_and_the_fused_model_saves(tmp_path):
    model = small()
    save_model_atomic(model, tmp_path / "generator.keras")
    loaded = keras.saving.load_model(tmp_path / "generator.keras", compile=False)
    fused = fuse_generator(loaded)
    fused.save(tmp_path / "fused.keras")
    again = keras.saving.load_model(tmp_path / "fused.keras", compile=False)
    x = inputs(model)
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), atol=2e-5)


def test_a_model_of_another_layout_is_refused_and_runs_unfused():
    z, tags = keras.Input((8,), name="z"), keras.Input((34,), name="tags")
    h = keras.layers.Dense(32 * 32 * 3, activation="tanh")(keras.layers.Concatenate()([z, tags]))
    model = keras.Model([z, tags], keras.layers.Reshape((32, 32, 3))(h))
    with pytest.raises(NotFusableError, match="upsample"):
        fuse_generator(model)
    characters = CharacterGenerator(model)
    assert characters.inference_model is model
    assert characters.generate([0, 1]).shape == (2, 32, 32, 3)


def test_character_generator_runs_the_fused_model_by_default():
    model = small()
    fast, plain = CharacterGenerator(model), CharacterGenerator(model, fuse=False)
    assert fast.inference_model is not model and plain.inference_model is model
    a = fast.generate([0, 1, 2], "blonde hair, blue eyes")
    b = plain.generate([0, 1, 2], "blonde hair, blue eyes")
    # uint8 images: float32 rounding may move a value across a step of 1/255.
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_fused_generator_matches_on_jax():
    code = """
import numpy as np, keras
from kanime.models import Generator
from kanime.inference.fused import fuse_generator
g = Generator(resolution=32, latent_dim=16, channels=8, num_blocks=2, upsample_channels=16)
rng = np.random.default_rng(0)
for layer in g.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.moving_variance.assign(rng.uniform(0.3, 3, layer.moving_variance.shape))
        layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
x = [rng.standard_normal((2, 16)).astype("float32"), np.ones((2, 34), "float32")]
for subpixel in (None, True):
    fused = fuse_generator(g, subpixel_rgb=subpixel)
    rgb = tuple(fused.get_layer("to_rgb").kernel.shape)
    diff = np.abs(np.asarray(fused.predict_on_batch(x)) - np.asarray(g.predict_on_batch(x)))
    print(subpixel, rgb, float(diff.max()))
"""
    lines = run_python(code, backend="jax").stdout.strip().splitlines()
    default, other = (line.split(" ", 1) for line in lines[-2:])
    # By default JAX keeps the 9x9 RGB convolution; asked, it takes the sub-pixel form.
    assert default[1].startswith("(9, 9, 4, 3)")
    assert other[1].startswith("(5, 5, 16, 12)")
    for line in (default, other):
        assert float(line[1].rsplit(" ", 1)[1]) < 2e-5
