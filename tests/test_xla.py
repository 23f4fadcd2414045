"""Compiled steps on TensorFlow: XLA computes the step the plain graph computes."""

import keras
import numpy as np
import pytest
from conftest import TINY
from keras import ops

from kanime.recipe import RecipeError, recipe_from_dict
from kanime.training import distribute
from kanime.training.fit import build_gan

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="XLA on TensorFlow; JAX always jits"
)


def tiny(**training):
    return recipe_from_dict({**TINY, "training": {**TINY["training"], **training}})


def test_an_xla_step_equals_the_graph_step():
    import tensorflow as tf

    from kanime.training.backends import tensorflow as steps

    recipe = tiny()
    keras.utils.set_random_seed(0)
    gan = build_gan(recipe)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32"))
    tags = tf.constant(recipe.vocabulary.sample(8, rng))
    noise = gan.draw(images, tags)  # drawn once: XLA's random bits may differ from TF's
    variables = gan.state_variables()
    start = [ops.convert_to_numpy(v) for v in variables]

    def step():
        logs = steps.discriminator_step(gan, images, tags, noise)
        logs.update(steps.generator_step(gan, noise))
        gan.update_ema(8)
        return logs

    results = []
    for jit in (False, True):
        for v, x in zip(variables, start):
            v.assign(x)
        fn = tf.function(step, jit_compile=jit)
        logs = {k: float(v) for k, v in fn().items()}
        logs.update({k: float(v) for k, v in fn().items()})  # a second step, from the first
        results.append((logs, [ops.convert_to_numpy(v) for v in variables]))
    (graph_logs, graph_end), (xla_logs, xla_end) = results
    assert set(graph_logs) == set(xla_logs) and {"d_loss", "g_loss", "gp"} <= set(xla_logs)
    for name, value in xla_logs.items():
        assert np.isfinite(value)
        assert value == pytest.approx(graph_logs[name], rel=1e-4, abs=1e-5), name
    # Adam's step is about the learning rate whatever the gradient's size, so a weight whose
    # gradient is near 0 may step either way: compare the weights as a whole.
    floats = [i for i, x in enumerate(start) if x.dtype.kind == "f"]
    moved = np.concatenate([(graph_end[i] - start[i]).ravel() for i in floats])
    apart = np.concatenate([(xla_end[i] - graph_end[i]).ravel() for i in floats])
    assert np.linalg.norm(moved) > 1e-2  # the steps trained
    assert np.linalg.norm(apart) < 0.01 * np.linalg.norm(moved)


def test_fit_with_jit_compile_trains():
    recipe = tiny(jit_compile=True)
    gan = build_gan(recipe)
    assert gan.jit_compile is True
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    history = gan.fit(
        images, recipe.vocabulary.sample(16, rng), batch_size=8, epochs=2, verbose=0
    ).history
    assert gan.step == 4
    for name in ("d_loss", "g_loss", "gp"):
        assert np.all(np.isfinite(history[name])), name


def test_xla_with_a_tensorflow_strategy_is_a_clear_error():
    with pytest.raises(RecipeError, match=r"jit_compile: true.*training.distribute"):
        build_gan(tiny(jit_compile=True, distribute="mirrored"))
    distribute.check_jit_compile("auto")  # auto and false pass
    distribute.check_jit_compile(False)
