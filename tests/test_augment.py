import keras
import numpy as np
import pytest
from keras import ops

from kanime.training.augment import augment, draw_augmentation, parse_augmentations


def test_parse_augmentations():
    assert parse_augmentations(None) == ()
    assert parse_augmentations("translation+cutout") == ("translation", "cutout")
    assert parse_augmentations("cutout + cutout") == ("cutout",)
    with pytest.raises(ValueError, match="'colour' is not one"):
        parse_augmentations("translation+colour")


def test_translation_shifts_each_image_by_its_own_draw_and_fills_zeros():
    x = np.random.default_rng(0).uniform(0.5, 1, (2, 8, 8, 3)).astype("float32")
    params = {"shift": np.array([[2, 0], [0, -3]], "int32")}
    y = ops.convert_to_numpy(augment(x, params, 8))
    np.testing.assert_allclose(y[0, 2:], x[0, :-2])  # down by 2 rows
    assert (y[0, :2] == 0).all()
    np.testing.assert_allclose(y[1, :, :-3], x[1, :, 3:])  # left by 3 columns
    assert (y[1, :, -3:] == 0).all()


def test_cutout_zeroes_a_square_of_half_the_side_and_keeps_colours():
    x = np.random.default_rng(0).uniform(0.5, 1, (2, 16, 16, 3)).astype("float32")
    params = {"cutout": np.array([[8, 8], [0, 15]], "int32")}
    y = ops.convert_to_numpy(augment(x, params, 16))
    zero = (y == 0).all(axis=-1)
    assert zero[0].sum() == 8 * 8 and zero[0, 4:12, 4:12].all()
    assert zero[1].sum() == 4 * 5 and zero[1, :4, 11:].all()  # clipped at the corner
    kept = ~zero
    np.testing.assert_array_equal(y[kept], x[kept])  # no pixel changes colour


def test_gradient_flows_through_the_augmentation():
    seed = keras.random.SeedGenerator(1)
    params = draw_augmentation(("translation", "cutout"), 4, 16, seed)
    assert tuple(params["shift"].shape) == (4, 2) and tuple(params["cutout"].shape) == (4, 2)
    shift = ops.convert_to_numpy(params["shift"])
    assert np.abs(shift).max() <= 2  # 1/8 of 16
    x = np.ones((4, 16, 16, 3), "float32")
    y = ops.convert_to_numpy(augment(x, params, 16))
    assert y.shape == x.shape and np.isfinite(y).all()
    assert 0 < (y == 0).mean() < 0.5
