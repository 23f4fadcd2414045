"""Differentiable augmentations of the discriminator's inputs that keep colours.

A discriminator that sees the same few thousand faces for many epochs learns them by
heart and stops teaching the generator (Zhao et al., 2020; Karras et al., 2020). The
cure is to show it, on real and generated images alike, transformed copies it cannot
memorise, through transformations the generator's gradient can pass (DiffAugment).
kanime's tags are mostly colours (hair, eyes), so only geometric transformations are
offered; brightness, saturation or contrast changes would change the tags:

- `"translation"`: each image shifted by up to 1/8 of its side in both directions,
  the uncovered border filled with zeros (mid-grey in [-1, 1]);
- `"cutout"`: a square of half the side, at a random place, set to zero.

The random draws come from `draw_augmentation`, so a step draws them with its other
randomness; `augment` applies them with `keras.ops` only (any backend).

Examples:
    >>> import numpy as np
    >>> from keras import random
    >>> images = np.ones((2, 16, 16, 3), "float32")
    >>> params = draw_augmentation(("translation", "cutout"), 2, 16, random.SeedGenerator(0))
    >>> out = augment(images, params, 16)
    >>> tuple(out.shape), bool((np.asarray(out) == 0).any())
    ((2, 16, 16, 3), True)

Reference:
    Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
    NeurIPS 2020.
"""

import keras
from keras import ops

AUGMENTATIONS = ("translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5
DRAWS = ("shift", "cutout")  # the keys of `draw_augmentation`'s dict


def parse_augmentations(text):
    """`"translation+cutout"` -> `("translation", "cutout")`; `""`/None -> `()`.

    Raises a `ValueError` naming an unknown augmentation.
    """
    if text is None:
        return ()
    names = tuple(part.strip() for part in str(text).split("+") if part.strip())
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"augmentations joined by '+', each one of {', '.join(AUGMENTATIONS)} "
                f"(e.g. 'translation+cutout'); {name!r} is not one"
            )
    return tuple(dict.fromkeys(names))


def draw_augmentation(names, batch_size, size, seed):
    """The random parameters of `names` for a batch of `size` x `size` images.

    Returns a dict: `shift` `(n, 2)` integer pixel shifts (rows, columns) for
    translation, `cutout` `(n, 2)` integer centres for cutout.
    """
    params = {}
    if "translation" in names:
        limit = max(1, int(size * TRANSLATION_RATIO))
        params["shift"] = keras.random.randint((batch_size, 2), -limit, limit + 1, seed=seed)
    if "cutout" in names:
        params["cutout"] = keras.random.randint((batch_size, 2), 0, size, seed=seed)
    return params


def _shift_matrix(shift, size):
    """`(n, size, size)` 0/1 matrices `M` with `(M @ x)[i] = x[i - shift]` (0 outside)."""
    index = ops.arange(size, dtype="int32")
    source = index[None, :, None] - ops.cast(shift, "int32")[:, None, None]
    return ops.cast(ops.equal(source, index[None, None, :]), "float32")


def augment(images, params, size):
    """`images` `(n, size, size, c)` transformed by the draws `params` (differentiable)."""
    if not params:
        return images
    dtype = images.dtype
    x = ops.cast(images, "float32")
    if "shift" in params:
        rows = _shift_matrix(params["shift"][:, 0], size)
        cols = _shift_matrix(params["shift"][:, 1], size)
        x = ops.einsum("nij,njkc->nikc", rows, x)
        x = ops.einsum("nkl,nilc->nikc", cols, x)
    if "cutout" in params:
        half = max(1, int(size * CUTOUT_RATIO)) // 2
        index = ops.arange(size, dtype="int32")
        centre = ops.cast(params["cutout"], "int32")
        offset_rows = index[None, :] - centre[:, 0:1]  # inside: -half <= offset < half
        offset_cols = index[None, :] - centre[:, 1:2]
        inside_rows = ops.logical_and(offset_rows >= -half, offset_rows < half)
        inside_cols = ops.logical_and(offset_cols >= -half, offset_cols < half)
        inside = ops.logical_and(inside_rows[:, :, None], inside_cols[:, None, :])
        x = x * ops.cast(ops.logical_not(inside), "float32")[..., None]
    return ops.cast(x, dtype)
