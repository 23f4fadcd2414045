import math

import keras
import numpy as np
import pytest
from keras import ops

from kanime.training import losses
from kanime.training.backends import backend_module


def test_tag_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 34)).astype("float32") * 3
    labels = (rng.random((4, 34)) < 0.3).astype("float32")
    p = 1 / (1 + np.exp(-logits))
    expected = np.mean(np.sum(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)), axis=1))
    got = float(losses.tag_loss(logits, labels))
    assert got == pytest.approx(expected, rel=1e-5)


def test_adversarial_losses_at_zero_logits():
    zero = np.zeros((3, 1), "float32")
    assert float(losses.discriminator_adversarial_loss(zero, zero)) == pytest.approx(
        2 * math.log(2), rel=1e-6
    )
    assert float(losses.generator_adversarial_loss(zero)) == pytest.approx(math.log(2), rel=1e-6)
    # A confident, correct discriminator has a small loss; the generator's is large.
    assert float(losses.discriminator_adversarial_loss(zero + 10, zero - 10)) < 1e-3
    assert float(losses.generator_adversarial_loss(zero - 10)) > 9


@pytest.mark.parametrize("w_scale", [0.5, 1.0, 3.0])
def test_dragan_penalty_known_answer_for_a_linear_critic(w_scale):
    # For D(x) = w . x the input gradient is w for every sample, so the
    # penalty is (|w| - 1)^2 exactly.
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    w = w / np.linalg.norm(w) * w_scale
    x = keras.ops.convert_to_tensor(rng.normal(size=(5, 8, 8, 3)).astype("float32"))
    w_t = keras.ops.convert_to_tensor(w)

    def critic(v):
        return ops.sum(v * w_t, axis=(1, 2, 3))[:, None]

    grads = backend_module().penalty_gradients(critic, x)
    np.testing.assert_allclose(ops.convert_to_numpy(grads), np.repeat(w, 5, 0), rtol=1e-5)
    assert float(losses.gradient_penalty(grads)) == pytest.approx((w_scale - 1) ** 2, abs=1e-5)


def test_dragan_points_stay_near_the_data():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (6, 4, 4, 3)).astype("float32")
    u = rng.random(x.shape).astype("float32")
    alpha = rng.random((6, 1, 1, 1)).astype("float32")
    x_hat = ops.convert_to_numpy(losses.dragan_points(x, u, alpha))
    np.testing.assert_allclose(x_hat, x + alpha * 0.5 * x.std() * u, rtol=1e-5, atol=1e-6)
    assert np.all(x_hat >= x - 1e-6)
    assert np.all(x_hat - x <= 0.5 * x.std() + 1e-6)


def test_grouped_tag_loss_is_softmax_per_group_and_skips_empty_groups():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 6)).astype("float32") * 2
    # Group 0-2 exclusive, group 3-4 exclusive, column 5 independent.
    labels = np.array(
        [[0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1]], "float32"
    )  # row 1 has no tag of the first group: it adds nothing for it

    def log_softmax(x):
        return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))

    expected = 0.0
    for start, stop in [(0, 3), (3, 5)]:
        ce = -np.sum(labels[:, start:stop] * log_softmax(logits[:, start:stop]), axis=1)
        expected += ce.mean()
    p = 1 / (1 + np.exp(-logits[:, 5]))
    y = labels[:, 5]
    expected += np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    got = float(losses.tag_loss(logits, labels, [(0, 3), (3, 5)]))
    assert got == pytest.approx(expected, rel=1e-5)
    # The asked colour wins over the others: raising its logit lowers the loss.
    better = logits.copy()
    better[0, 1] += 2.0
    assert float(losses.tag_loss(better, labels, [(0, 3), (3, 5)])) < got


def test_r1_penalty_is_the_mean_squared_gradient_norm():
    g = np.zeros((2, 4, 4, 3), "float32")
    g[0, 0, 0, 0] = 3.0
    g[1, 1, 1, 1] = 4.0
    g[1, 2, 2, 2] = 3.0
    assert float(losses.r1_penalty(g)) == pytest.approx((9.0 + 25.0) / 2)
