import numpy as np
import pytest

from kanime.images import conditioning_grid_inputs, image_grid, save_png, to_uint8
from kanime.tags import PAPER_TAGS


def test_image_grid_places_tiles_row_major():
    tiles = np.stack([np.full((4, 5, 3), i, "uint8") for i in range(6)])
    grid = image_grid(tiles, rows=2, cols=3, padding=1, background=255)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 1 + 6, 0] == 1 and grid[1 + 5, 1, 0] == 3
    assert grid[0, 0, 0] == 255
    with pytest.raises(ValueError, match="rows \\* cols"):
        image_grid(tiles, rows=2, cols=2)


def test_to_uint8_maps_the_tanh_range():
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255])


def test_conditioning_grid_rows_differ_only_in_the_asked_group():
    z, tags, labels = conditioning_grid_inputs(PAPER_TAGS, rows=4, cols=3, latent_dim=8, seed=1)
    assert z.shape == (12, 8) and tags.shape == (12, 34)
    assert labels == ["blonde hair", "brown hair", "black hair", "blue hair"]
    z, tags = z.reshape(4, 3, 8), tags.reshape(4, 3, 34)
    np.testing.assert_array_equal(z[0], z[3])  # same noise in every row
    np.testing.assert_array_equal(tags[0, :, 13:], tags[2, :, 13:])  # same other tags
    for r in range(4):
        assert np.all(tags[r, :, r] == 1) and np.all(tags[r, :, :13].sum(-1) == 1)


def test_save_png_round_trip(tmp_path):
    import cv2

    image = np.zeros((3, 4, 3), "uint8")
    image[0, 0] = (255, 0, 0)  # red in RGB
    save_png(tmp_path / "x.png", image, scale=2)
    back = cv2.imread(str(tmp_path / "x.png"))[..., ::-1]
    assert back.shape == (6, 8, 3)
    np.testing.assert_array_equal(back[1, 1], (255, 0, 0))
