"""Winograd's F(2x2, 3x3) and F(4x4, 3x3) convolutions: what a 3x3 "same" Conv2D computes."""

import keras
import numpy as np
import pytest
from conftest import run_python

from kanime.inference.winograd import WinogradConv2D, WinogradF4x4Conv2D, winograd_kernel

# Each layer, its output tile, input shapes it takes, and how close it comes to the direct
# convolution, relative to the largest output (F(4x4, 3x3)'s larger coefficients cost
# some precision).
F2 = (WinogradConv2D, 2, [(1, 2, 2, 1), (2, 8, 6, 5), (3, 16, 16, 64), (1, 4, 32, 7)], 2e-6)
F4 = (WinogradF4x4Conv2D, 4, [(1, 4, 4, 1), (2, 8, 12, 5), (3, 16, 16, 64), (1, 4, 32, 7)], 2e-5)
CASES = [(cls, tile, shape, tol) for cls, tile, shapes, tol in (F2, F4) for shape in shapes]


def direct_and_winograd(cls, tile, x, kernel, bias, use_bias=True):
    conv = keras.layers.Conv2D(kernel.shape[-1], 3, padding="same", use_bias=use_bias)
    conv.build(x.shape)
    conv.set_weights([kernel, bias] if use_bias else [kernel])
    layer = cls(kernel.shape[-1], use_bias=use_bias)
    layer.build(x.shape)
    transformed = winograd_kernel(kernel, output_tile=tile)
    layer.set_weights([transformed, bias] if use_bias else [transformed])
    return keras.ops.convert_to_numpy(conv(x)), keras.ops.convert_to_numpy(layer(x))


@pytest.mark.parametrize("cls, tile, shape, tol", CASES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_it_computes_a_same_padded_3x3_convolution(cls, tile, shape, tol, use_bias):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype("float32")
    kernel = rng.standard_normal((3, 3, shape[-1], 9)).astype("float32")
    bias = rng.standard_normal(9).astype("float32")
    direct, winograd = direct_and_winograd(cls, tile, x, kernel, bias, use_bias)
    assert winograd.shape == direct.shape == (*shape[:3], 9)
    scale = np.abs(direct).max()
    np.testing.assert_allclose(winograd, direct, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("cls, tile", [F2[:2], F4[:2]])
def test_the_comparison_above_can_fail(cls, tile):
    # A kernel off by one tap gives another result: the comparison sees it.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 8, 3)).astype("float32")
    kernel = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    direct, _ = direct_and_winograd(cls, tile, x, kernel, np.zeros(4, "float32"))
    moved = kernel.copy()
    moved[0, 0] += 0.1
    _, winograd = direct_and_winograd(cls, tile, x, moved, np.zeros(4, "float32"))
    assert np.abs(winograd - direct).max() > 1e-2


def test_an_input_that_does_not_tile_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"'wino'.*multiples of 2.*\(2, 7, 8, 3\)"):
        WinogradConv2D(4, name="wino").build((2, 7, 8, 3))
    with pytest.raises(ValueError, match=r"'wino4'.*multiples of 4.*\(2, 8, 6, 3\)"):
        WinogradF4x4Conv2D(4, name="wino4").build((2, 8, 6, 3))


def test_a_bad_kernel_or_tile_is_refused():
    with pytest.raises(ValueError, match=r"\(3, 3, C, O\).*\(5, 5, 2, 1\)"):
        winograd_kernel(np.ones((5, 5, 2, 1)))
    with pytest.raises(ValueError, match=r"`output_tile` must be 2 or 4.*3"):
        winograd_kernel(np.ones((3, 3, 2, 1)), output_tile=3)


@pytest.mark.parametrize("cls, tile", [F2[:2], F4[:2]])
def test_a_model_with_it_saves_and_loads(tmp_path, cls, tile):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, cls(5, name="wino")(inputs))
    rng = np.random.default_rng(1)
    t = tile + 2
    model.get_layer("wino").set_weights(
        [rng.standard_normal((t, t, 3, 5)).astype("float32"), np.ones(5, "float32")]
    )
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert type(again.get_layer("wino")) is cls
    assert again.get_layer("wino").get_config()["filters"] == 5
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(again.predict_on_batch(x), model.predict_on_batch(x))


def test_they_compute_the_convolution_on_jax():
    code = """
import keras, numpy as np
from kanime.inference.winograd import WinogradConv2D, WinogradF4x4Conv2D, winograd_kernel
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 16, 12, 6)).astype("float32")
kernel = rng.standard_normal((3, 3, 6, 8)).astype("float32")
direct = keras.ops.conv(x, kernel, padding="same")
errors = []
for cls, tile in ((WinogradConv2D, 2), (WinogradF4x4Conv2D, 4)):
    layer = cls(8)
    layer.build(x.shape)
    layer.set_weights([winograd_kernel(kernel, output_tile=tile), np.zeros(8, "float32")])
    diff = np.abs(keras.ops.convert_to_numpy(layer(x) - direct))
    errors.append(float(diff.max() / np.abs(keras.ops.convert_to_numpy(direct)).max()))
print(keras.backend.backend(), *errors)
"""
    backend, f2, f4 = run_python(code, backend="jax").stdout.split()[-3:]
    assert backend == "jax" and float(f2) < 2e-6 and float(f4) < 2e-5
