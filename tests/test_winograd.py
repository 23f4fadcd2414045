"""Winograd's F(2x2, 3x3) convolution: what a 3x3 "same" Conv2D computes, saved and refused."""

import keras
import numpy as np
import pytest
from conftest import run_python

from kanime.models.winograd import WinogradConv2D, winograd_kernel


def direct_and_winograd(x, kernel, bias, use_bias=True):
    conv = keras.layers.Conv2D(kernel.shape[-1], 3, padding="same", use_bias=use_bias)
    conv.build(x.shape)
    conv.set_weights([kernel, bias] if use_bias else [kernel])
    layer = WinogradConv2D(kernel.shape[-1], use_bias=use_bias)
    layer.build(x.shape)
    layer.set_weights([winograd_kernel(kernel), bias] if use_bias else [winograd_kernel(kernel)])
    return keras.ops.convert_to_numpy(conv(x)), keras.ops.convert_to_numpy(layer(x))


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (2, 8, 6, 5), (3, 16, 16, 64), (1, 4, 32, 7)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_it_computes_a_same_padded_3x3_convolution(shape, use_bias):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype("float32")
    kernel = rng.standard_normal((3, 3, shape[-1], 9)).astype("float32")
    bias = rng.standard_normal(9).astype("float32")
    direct, winograd = direct_and_winograd(x, kernel, bias, use_bias)
    assert winograd.shape == direct.shape == (*shape[:3], 9)
    scale = np.abs(direct).max()
    np.testing.assert_allclose(winograd, direct, rtol=0, atol=2e-6 * scale)


def test_the_comparison_above_can_fail():
    # A kernel off by one tap gives another result: the comparison sees it.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 8, 3)).astype("float32")
    kernel = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    direct, _ = direct_and_winograd(x, kernel, np.zeros(4, "float32"))
    moved = kernel.copy()
    moved[0, 0] += 0.1
    _, winograd = direct_and_winograd(x, moved, np.zeros(4, "float32"))
    assert np.abs(winograd - direct).max() > 1e-2


def test_an_odd_input_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"'wino'.*even height and width.*\(2, 7, 8, 3\)"):
        WinogradConv2D(4, name="wino").build((2, 7, 8, 3))


def test_a_kernel_other_than_3x3_is_refused():
    with pytest.raises(ValueError, match=r"\(3, 3, C, O\).*\(5, 5, 2, 1\)"):
        winograd_kernel(np.ones((5, 5, 2, 1)))


def test_a_model_with_it_saves_and_loads(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, WinogradConv2D(5, name="wino")(inputs))
    rng = np.random.default_rng(1)
    model.get_layer("wino").set_weights(
        [rng.standard_normal((4, 4, 3, 5)).astype("float32"), np.ones(5, "float32")]
    )
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert again.get_layer("wino").get_config()["filters"] == 5
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(again.predict_on_batch(x), model.predict_on_batch(x))


def test_it_computes_the_convolution_on_jax():
    code = """
import keras, numpy as np
from kanime.models.winograd import WinogradConv2D, winograd_kernel
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 16, 12, 6)).astype("float32")
kernel = rng.standard_normal((3, 3, 6, 8)).astype("float32")
layer = WinogradConv2D(8)
layer.build(x.shape)
layer.set_weights([winograd_kernel(kernel), np.zeros(8, "float32")])
direct = keras.ops.conv(x, kernel, padding="same")
diff = np.abs(keras.ops.convert_to_numpy(layer(x) - direct))
print(keras.backend.backend(), float(diff.max() / np.abs(keras.ops.convert_to_numpy(direct)).max()))
"""
    backend, relative = run_python(code, backend="jax").stdout.split()[-2:]
    assert backend == "jax" and float(relative) < 2e-6
