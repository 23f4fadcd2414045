import numpy as np
import pytest

from kanime.data.procedural import make_faces
from kanime.evaluation.checkerboard import checkerboard_score


def test_procedural_faces_score_about_one_and_a_sub_pixel_pattern_raises_it():
    images, _ = make_faces(32, 64, seed=0, progress=False)
    faces = images.astype("float32") / 127.5 - 1
    clean = checkerboard_score(faces)
    assert clean < 2
    # What an untrained pixel shuffle paints: the 4 sub-pixels of each 2x2 block differ.
    pattern = np.array([[0.1, -0.1], [-0.05, 0.05]], "float32")
    board = faces + np.tile(pattern, (32, 32))[None, :, :, None]
    assert checkerboard_score(board) > 3 * clean
    # A pattern with a 4-pixel period is seen too; a shift of the images changes nothing.
    stripes = faces + 0.1 * (np.arange(64) // 2 % 2)[None, None, :, None]
    assert checkerboard_score(stripes) > 3 * clean
    assert checkerboard_score(np.roll(board, 1, axis=2)) == pytest.approx(
        checkerboard_score(board), rel=1e-6
    )


def test_checkerboard_refuses_what_is_not_square_images():
    with pytest.raises(ValueError, match=r"square images.*\(4, 8, 16, 3\)"):
        checkerboard_score(np.zeros((4, 8, 16, 3)))
