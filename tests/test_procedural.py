"""Tests of the procedural anime faces (`kanime.data.procedural`)."""

import numpy as np
import pytest

from kanime.data.procedural import (
    EYE_RGB,
    HAIR_RGB,
    ProceduralFaces,
    draw_face,
    make_faces,
    sample_tags,
)
from kanime.tags import (
    EYE_COLORS,
    HAIR_COLORS,
    HAIR_STYLES,
    OTHER_TAGS,
    PAPER_TAGS,
    TagGroup,
    TagVocabulary,
)


def _face(names, size=64, seed=0):
    """One face with the given tag names, drawn from a fresh generator seeded `seed`."""
    return draw_face(PAPER_TAGS.encode(names), size, np.random.default_rng(seed))


def _changed(a, b):
    """The mask of pixels that differ between two images."""
    return np.any(a != b, axis=-1)


def _distance(pixels, rgb):
    return np.linalg.norm(pixels.astype(np.float64) - np.asarray(rgb, np.float64), axis=-1)


def _most_common(pixels):
    values, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    return values[np.argmax(counts)]


# --- colour tables -----------------------------------------------------------


def test_colour_tables_cover_the_vocabulary_and_are_separated():
    assert set(HAIR_RGB) == set(HAIR_COLORS)
    assert set(EYE_RGB) == set(EYE_COLORS)
    for table in (HAIR_RGB, EYE_RGB):
        colours = np.array(list(table.values()), dtype=np.float64)
        assert colours.min() >= 0 and colours.max() <= 255
        gaps = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
        gaps[np.diag_indices(len(colours))] = np.inf
        assert gaps.min() > 40, "two colours of one group are too close to tell apart"
    # black hair is dark but not pure black; white hair is near white
    assert 0 < max(HAIR_RGB["black hair"]) < 80
    assert min(HAIR_RGB["white hair"]) > 230


# --- determinism -------------------------------------------------------------


def test_same_seed_gives_identical_bytes():
    images_a, tags_a = make_faces(6, 32, seed=3)
    images_b, tags_b = make_faces(6, 32, seed=3)
    assert images_a.tobytes() == images_b.tobytes()
    assert tags_a.tobytes() == tags_b.tobytes()


def test_different_seed_gives_different_faces():
    images_a, _ = make_faces(6, 32, seed=3)
    images_b, _ = make_faces(6, 32, seed=4)
    assert not np.array_equal(images_a, images_b)
    # and the faces of one set differ from each other
    assert len({img.tobytes() for img in images_a}) == 6


def test_face_i_does_not_depend_on_n():
    small_images, small_tags = make_faces(3, 32, seed=11)
    big_images, big_tags = make_faces(8, 32, seed=11)
    np.testing.assert_array_equal(small_images, big_images[:3])
    np.testing.assert_array_equal(small_tags, big_tags[:3])


def test_draw_face_is_deterministic_given_the_generator():
    tags = PAPER_TAGS.encode(["pink hair", "green eyes", "drill hair", "hat", "ribbon"])
    a = draw_face(tags, 48, np.random.default_rng(5))
    b = draw_face(tags, 48, np.random.default_rng(5))
    c = draw_face(tags, 48, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --- shapes, dtypes, tags ----------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size):
    images, tags = make_faces(3, size, seed=0)
    assert images.shape == (3, size, size, 3) and images.dtype == np.uint8
    assert tags.shape == (3, len(PAPER_TAGS)) and tags.dtype == np.float32
    # a real picture, not a blank canvas
    assert images.reshape(3, -1, 3).std(axis=1).mean() > 20


@pytest.mark.parametrize("size", [16, 100, 512])
def test_any_size_works(size):
    img = _face(["blue hair", "red eyes", "ponytail", "glasses"], size=size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    hair = _distance(img, HAIR_RGB["blue hair"]) < 40
    assert hair.mean() > 0.03


def test_sampled_tags_follow_the_group_rules():
    tags = sample_tags(4000, np.random.default_rng(0))
    assert tags.dtype == np.float32 and tags.shape == (4000, 34)
    assert set(np.unique(tags)) <= {0.0, 1.0}
    for group in ("hair_color", "eye_color", "hair_style"):
        block = tags[:, PAPER_TAGS.group_slice(group)]
        np.testing.assert_array_equal(block.sum(axis=1), 1.0)
        # uniform: every tag of the group is used, roughly equally often
        freq = block.mean(axis=0)
        assert np.all(np.abs(freq - 1.0 / block.shape[1]) < 0.04)
    other = tags[:, PAPER_TAGS.group_slice("other")]
    assert other.shape[1] == len(OTHER_TAGS)
    assert np.all(np.abs(other.mean(axis=0) - 0.25) < 0.03)


def test_make_faces_tags_have_one_colour_and_style_each():
    _, tags = make_faces(40, 16, seed=2)
    for group in ("hair_color", "eye_color", "hair_style"):
        np.testing.assert_array_equal(tags[:, PAPER_TAGS.group_slice(group)].sum(axis=1), 1.0)


def test_procedural_faces_holds_the_set():
    faces = ProceduralFaces(5, 32, seed=7)
    images, tags = make_faces(5, 32, seed=7)
    assert len(faces) == 5
    np.testing.assert_array_equal(faces.images, images)
    np.testing.assert_array_equal(faces.tags, tags)
    x = faces.as_float()
    assert x.dtype == np.float32 and x.shape == (5, 32, 32, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(x, images / 127.5 - 1.0, atol=1e-6)


# --- the picture matches the tags ------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_hair_pixels_have_the_asked_colour(seed):
    for i, hair in enumerate(HAIR_COLORS):
        other = HAIR_COLORS[(i + 6) % len(HAIR_COLORS)]
        style = HAIR_STYLES[(i + seed) % len(HAIR_STYLES)]
        a = _face([hair, "blue eyes", style], seed=seed)
        b = _face([other, "blue eyes", style], seed=seed)
        changed = _changed(a, b)
        # the hair is a big part of the picture ...
        assert changed.mean() > 0.1, (hair, style)
        # ... and its dominant colour is exactly the asked one (shading aside)
        assert _distance(_most_common(a[changed]), HAIR_RGB[hair]) < 8, (hair, style)
        assert np.mean(_distance(a[changed], HAIR_RGB[hair]) < 40) > 0.3, (hair, style)


def test_hair_colour_dominates_at_32_pixels():
    """The quick start trains at 32x32: the hair colour must still be plain to see."""
    table = np.array([HAIR_RGB[h] for h in HAIR_COLORS], dtype=np.float64)
    for i, hair in enumerate(HAIR_COLORS):
        other = HAIR_COLORS[(i + 6) % len(HAIR_COLORS)]
        style = HAIR_STYLES[i % len(HAIR_STYLES)]
        a = _face([hair, "green eyes", style], size=32, seed=i)
        b = _face([other, "green eyes", style], size=32, seed=i)
        pixels = a[_changed(a, b)].astype(np.float64)
        nearest = np.argmin(np.linalg.norm(pixels[:, None] - table[None], axis=-1), axis=1)
        votes = np.bincount(nearest, minlength=len(HAIR_COLORS))
        assert votes.argmax() == i, (hair, style, votes)


@pytest.mark.parametrize("seed", [0, 3])
def test_eye_pixels_have_the_asked_colour(seed):
    for i, eye in enumerate(EYE_COLORS):
        other = EYE_COLORS[(i + 5) % len(EYE_COLORS)]
        a = _face(["red hair", eye, "short hair"], seed=seed)
        b = _face(["red hair", other, "short hair"], seed=seed)
        changed = _changed(a, b)
        # only the eyes change: a small part of the picture
        assert 0.003 < changed.mean() < 0.05, eye
        # and the irises show the asked colour itself
        assert np.sum(_distance(a[changed], EYE_RGB[eye]) < 25) >= 4, eye


@pytest.mark.parametrize("tag", ["glasses", "hat", "blush", "ribbon", "smile", "open mouth"])
def test_accessories_and_expressions_change_the_face(tag):
    base = ["brown hair", "blue eyes", "short hair"]
    for seed in (0, 1):
        off = _face(base, seed=seed)
        on = _face(base + [tag], seed=seed)
        changed = _changed(off, on)
        assert changed.sum() > 10, (tag, seed)
        # nothing else moves: the face, hair and background are the same
        assert changed.mean() < 0.35, (tag, seed)


def test_blush_is_pink_on_the_cheeks():
    base = ["black hair", "blue eyes", "long hair"]
    off, on = _face(base, seed=4), _face(base + ["blush"], seed=4)
    changed = _changed(off, on)
    rows = np.nonzero(changed)[0]
    # the cheeks: below the eyes, in the middle of the picture
    assert 0.45 * 64 < rows.mean() < 0.85 * 64
    gain = on[changed].astype(int) - off[changed].astype(int)
    assert np.mean(gain[:, 0] - gain[:, 1]) > 5  # towards pink: red kept, green lowered


def test_hat_sits_on_top_of_the_head():
    base = ["green hair", "purple eyes", "twintails"]
    off, on = _face(base, seed=2), _face(base + ["hat"], seed=2)
    rows = np.nonzero(_changed(off, on))[0]
    assert rows.size > 100
    assert rows.mean() < 0.45 * 64


def test_hair_styles_look_different():
    images = [_face(["blue hair", "red eyes", style], seed=9) for style in HAIR_STYLES]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert _changed(images[i], images[j]).mean() > 0.03, (HAIR_STYLES[i], HAIR_STYLES[j])


def test_long_hair_reaches_the_bottom_and_short_hair_does_not():
    blue = HAIR_RGB["blue hair"]
    long_ = _face(["blue hair", "red eyes", "long hair"], seed=1)
    short = _face(["blue hair", "red eyes", "short hair"], seed=1)
    assert np.sum(_distance(long_[-4:], blue) < 30) > 4
    assert np.sum(_distance(short[-4:], blue) < 30) == 0


def test_missing_exclusive_tags_get_a_random_one():
    empty = np.zeros(len(PAPER_TAGS), np.float32)
    a = draw_face(empty, 32, np.random.default_rng(0))
    b = draw_face(empty, 32, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.reshape(-1, 3).std(axis=0).mean() > 20


# --- errors ------------------------------------------------------------------


def test_other_vocabularies_are_refused():
    other = TagVocabulary([TagGroup("hair", ("red hair", "blue hair"), exclusive=True)])
    with pytest.raises(ValueError, match="34 tags"):
        sample_tags(2, np.random.default_rng(0), vocabulary=other)
    with pytest.raises(ValueError, match="red hair|TagVocabulary"):
        make_faces(2, 32, vocabulary=other)


def test_wrong_tag_vector_or_size_is_refused():
    with pytest.raises(ValueError, match="34"):
        draw_face(np.zeros(10), 32, np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        draw_face(np.zeros(34), 4, np.random.default_rng(0))
