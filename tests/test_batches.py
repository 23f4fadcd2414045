import numpy as np
import pytest

from kanime.data.batches import ArrayBatches


def make(n=20, flip=True, seed=0):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    tags = np.arange(n, dtype="float32")[:, None].repeat(2, 1)  # row i carries i
    return ArrayBatches(images, tags, batch_size=4, steps_per_epoch=3, seed=seed, flip=flip)


def test_batches_are_a_function_of_position_only():
    a, b = make(), make()
    b.set_epoch(2)
    for position in range(6, 9):
        xa, ta = a.batch(position)
        xb, tb = b[position - 6]
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)
    x0, _ = make(seed=1).batch(0)
    assert not np.array_equal(x0, a.batch(0)[0])


def test_each_round_covers_every_image_once_and_keeps_pairs_together():
    data = make(flip=False)
    seen = np.concatenate([data.batch(p)[1][:, 0] for p in range(5)])
    assert sorted(seen) == list(range(20))
    images, tags = data.batch(3)
    for image, tag in zip(images, tags):
        expected = data.images[int(tag[0])].astype("float32") / 127.5 - 1
        np.testing.assert_allclose(image, expected, atol=1e-6)
    assert images.min() >= -1 and images.max() <= 1


def test_flip_mirrors_images():
    plain, flipped = make(flip=False), make(flip=True)
    x, t = plain.batch(0)
    y, _ = flipped.batch(0)
    mirrored = [np.array_equal(a[:, ::-1], b) and not np.array_equal(a, b) for a, b in zip(x, y)]
    assert any(mirrored)
    assert all(np.array_equal(a, b) or np.array_equal(a[:, ::-1], b) for a, b in zip(x, y))


def test_tf_dataset_gives_the_same_batches():
    data = make()
    got = list(data.to_tf_dataset(2, 5).as_numpy_iterator())
    assert len(got) == 3
    for (x, t), position in zip(got, range(2, 5)):
        ex, et = data.batch(position)
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(t, et)


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        ArrayBatches(np.zeros((4, 2, 2, 3)), np.zeros((3, 34)), 2, 1)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ArrayBatches(np.zeros((2, 2, 2, 3)), np.zeros((2, 34)), 4, 1)
