"""The generator as TensorFlow Lite: same images as Keras, any batch size, clear refusals."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_python
from test_fused import inputs, pixel_shuffle_array, small, trained_looking

from kanime.inference import CharacterGenerator
from kanime.inference.fused import NotFusableError, fuse_generator
from kanime.inference.tflite import (
    TFLiteGenerator,
    images_from_subpixels,
    prepare_for_tflite,
    to_tflite,
)


@pytest.mark.parametrize("kwargs", [{}, {"tag_encoding": "signed"}, {"resolution": 64}])
def test_tflite_generator_makes_the_same_images_at_any_batch_size(kwargs):
    model = small(**kwargs)
    lite = TFLiteGenerator(to_tflite(model), num_threads=2, max_batch=4)
    # A new batch size reshapes the interpreter; going back to an old one must too. Batches
    # above max_batch run in slices of 4 (5 = 4 + 1, 11 = 4 + 4 + 3).
    for n in (1, 5, 1, 11):
        x = inputs(model, n=n, seed=n)
        got = lite.predict_on_batch(x)
        expected = np.asarray(model.predict_on_batch(x))
        assert got.shape == expected.shape == (n, model.resolution, model.resolution, 3)
        np.testing.assert_allclose(got, expected, atol=2e-5)
        assert lite.interpreter.get_input_details()[0]["shape"][0] <= 4


def test_the_tflite_comparison_can_fail():
    # Another generator's weights give other images: the tolerance above is not loose.
    model, other = small(), trained_looking(small(), seed=5)
    x = inputs(model)
    diff = np.abs(TFLiteGenerator(to_tflite(other)).predict_on_batch(x) - model.predict_on_batch(x))
    assert diff.max() > 1e-2


def test_prepared_model_pads_rgb_with_a_zero_channel_before_the_last_shuffle():
    model = small(resolution=64)
    x = inputs(model)
    prepared = prepare_for_tflite(model)
    # The sub-pixel RGB convolution makes 16 channels: 4 sub-pixels of (R, G, B, 0).
    assert prepared.get_layer("to_rgb").kernel.shape == (5, 5, 16, 16)
    # Plain convolutions: 2 per residual block (2 blocks), 1 per upsampling block, RGB.
    convs = {layer.name: type(layer).__name__ for layer in prepared.layers if "conv" in layer.name}
    assert set(convs.values()) == {"Conv2D"} and len(convs) == 2 * 2 + 3
    subpixels = np.asarray(prepared.predict_on_batch(x))
    assert subpixels.shape == (3, 32, 32, 16)
    assert (subpixels[..., 3::4] == 0).all()  # tanh(0) = 0
    images = images_from_subpixels(subpixels)
    np.testing.assert_allclose(images, model.predict_on_batch(x), atol=2e-5)
    # The rearrangement is the pixel shuffle the fused model ends with.
    fused = fuse_generator(model, subpixel_rgb=True)
    before = keras.Model(fused.inputs, fused.get_layer("to_rgb").output)
    shuffled = np.tanh(pixel_shuffle_array(before.predict_on_batch(x)))  # as `images` does
    np.testing.assert_allclose(images, shuffled, atol=2e-5)


def test_tflite_generator_refuses_bad_inputs_and_other_models():
    model = small()
    lite = TFLiteGenerator(to_tflite(model))
    z, tags = inputs(model, n=2)
    with pytest.raises(ValueError, match=r"`z` of shape \(n, 16\).*\(2, 15\)"):
        lite.predict_on_batch([z[:, :15], tags])
    with pytest.raises(ValueError, match=r"`tags` of shape \(n, 34\).*\(2,\)"):
        lite.predict_on_batch([z, tags[:, 0]])
    with pytest.raises(ValueError, match="as many rows.*2 and 1"):
        lite.predict_on_batch([z, tags[:1]])
    with pytest.raises(ValueError, match="`max_batch` must be a positive integer.*0"):
        TFLiteGenerator(to_tflite(model), max_batch=0)
    # A TensorFlow Lite model that is not a converted generator.
    module = tf.Module()
    module.double = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec((None, 3))])
    other = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.double.get_concrete_function()], module
    )
    with pytest.raises(ValueError, match=r"inputs `z` and `tags`.*\['x'\]"):
        TFLiteGenerator(other.convert())


def test_character_generator_runs_tensorflow_lite_on_a_cpu_by_default():
    model = small()
    auto, plain = CharacterGenerator(model), CharacterGenerator(model, engine="keras")
    assert auto.engine == "tflite" and isinstance(auto.inference_model, TFLiteGenerator)
    assert plain.engine == "keras" and isinstance(plain.inference_model, keras.Model)
    a = auto.generate([0, 1, 2], "blonde hair, blue eyes")
    b = plain.generate([0, 1, 2], "blonde hair, blue eyes")
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
    # uint8 images: float32 rounding may move a value across a step of 1/255.
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_character_generator_engine_refusals():
    model = small()
    with pytest.raises(ValueError, match=r"`engine` must be one of.*'onnx'"):
        CharacterGenerator(model, engine="onnx")
    with pytest.raises(ValueError, match="needs `fuse=True`"):
        CharacterGenerator(model, fuse=False, engine="tflite")
    z, tags = keras.Input((8,), name="z"), keras.Input((34,), name="tags")
    h = keras.layers.Dense(32 * 32 * 3, activation="tanh")(keras.layers.Concatenate()([z, tags]))
    other = keras.Model([z, tags], keras.layers.Reshape((32, 32, 3))(h))
    with pytest.raises(ValueError, match="needs a fusable generator.*upsample") as info:
        CharacterGenerator(other, engine="tflite")
    assert isinstance(info.value.__cause__, NotFusableError)
    assert CharacterGenerator(other).engine == "keras"  # "auto" runs it as it is


def test_jax_backend_keeps_keras_and_refuses_tflite_clearly():
    code = """
from kanime.inference import CharacterGenerator
from kanime.models import Generator
g = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1, upsample_channels=16)
print(CharacterGenerator(g).engine)
try:
    CharacterGenerator(g, engine="tflite")
except ValueError as e:
    print(e)
"""
    lines = run_python(code, backend="jax").stdout.strip().splitlines()
    assert lines[-2] == "keras"
    assert "needs the TensorFlow backend" in lines[-1] and "'jax'" in lines[-1]
