import keras
import numpy as np
import pytest

from kanime.models import Discriminator, Generator
from kanime.tags import PAPER_TAGS
from kanime.training import TagGAN
from kanime.training.gan import METRIC_NAMES


def make_gan(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    gan = TagGAN(
        Generator(32, channels=8, num_blocks=1, upsample_channels=32),
        Discriminator(32, channels=8, blocks_per_stage=1),
        seed=seed,
        **kwargs,
    )
    gan.compile(keras.optimizers.Adam(1e-3, 0.5), keras.optimizers.Adam(1e-3, 0.5))
    return gan


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, 32, 32, 3)).astype("float32"), PAPER_TAGS.sample(n, rng)


def test_one_fit_updates_both_networks_and_logs_every_metric():
    gan = make_gan(ema_half_life_images=1000)
    g0 = [np.array(w) for w in gan.generator.trainable_weights]
    d0 = [np.array(w) for w in gan.discriminator.trainable_weights]
    images, tags = data()
    history = gan.fit(images, tags, batch_size=8, epochs=2, verbose=0)
    assert set(history.history) == set(METRIC_NAMES)
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), name
    assert gan.step == 4
    assert any(
        not np.allclose(a, np.asarray(b)) for a, b in zip(g0, gan.generator.trainable_weights)
    )
    assert any(
        not np.allclose(a, np.asarray(b)) for a, b in zip(d0, gan.discriminator.trainable_weights)
    )


def test_ema_lags_the_generator_and_zero_half_life_copies_it():
    images, tags = data()
    slow = make_gan(ema_half_life_images=1e9)
    start = [np.array(w) for w in slow.ema_generator.trainable_weights]
    slow.fit(images, tags, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(start, slow.ema_generator.weights):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-6)

    copy = make_gan(ema_half_life_images=0)
    copy.fit(images, tags, batch_size=8, epochs=1, verbose=0)
    for w, e in copy.ema_pairs():
        np.testing.assert_allclose(np.asarray(w), np.asarray(e), atol=1e-6)

    mid = make_gan(ema_half_life_images=16)  # beta = 0.5 per batch of 8 images... 0.5 ** 0.5
    mid.fit(images, tags, batch_size=8, epochs=1, verbose=0)
    w, e = next((w, e) for w, e in mid.ema_pairs() if w.trainable)
    assert not np.allclose(np.asarray(w), np.asarray(e))


def test_same_seed_same_losses_different_seed_different():
    images, tags = data()
    runs = []
    for seed in (5, 5, 6):
        gan = make_gan(seed)
        runs.append(gan.fit(images, tags, batch_size=8, epochs=1, shuffle=False, verbose=0))
    assert runs[0].history["d_loss"] == pytest.approx(runs[1].history["d_loss"], rel=1e-5)
    assert runs[0].history["g_loss"] != pytest.approx(runs[2].history["g_loss"], rel=1e-5)


def test_data_mode_asks_for_real_tag_sets():
    gan = make_gan(fake_tags="data")
    images, tags = data(8)
    drawn = keras.ops.convert_to_numpy(gan.draw(images, tags)["fake_tags"])
    # A permutation of the batch's rows.
    assert sorted(map(tuple, drawn)) == sorted(map(tuple, tags))
    paper = keras.ops.convert_to_numpy(make_gan().draw(images, tags)["fake_tags"])
    np.testing.assert_array_equal(paper[:, :13].sum(1), 1)


def test_bad_arguments():
    g = Generator(32, channels=8, num_blocks=1, upsample_channels=32)
    d = Discriminator(32, channels=8, blocks_per_stage=1)
    with pytest.raises(ValueError, match="fake_tags"):
        TagGAN(g, d, fake_tags="random")
    with pytest.raises(ValueError, match="ema_half_life_images"):
        TagGAN(g, d, ema_half_life_images=-1)
    d5 = Discriminator(32, num_tags=5, channels=8, blocks_per_stage=1)
    with pytest.raises(ValueError, match="34 tags"):
        TagGAN(g, d5)
