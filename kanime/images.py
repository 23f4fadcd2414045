"""Image helpers every layer shares: [-1, 1] floats to bytes, grids, PNG files, grid inputs."""

import numpy as np

from kanime.atomic import atomic_path


def to_uint8(images):
    """Images in [-1, 1] (any float array) -> uint8 in [0, 255]."""
    images = np.asarray(images, dtype="float32")
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype("uint8")


def image_grid(images, rows, cols, padding=2, background=255):
    """Tiles `rows * cols` images `(n, h, w, 3)` (uint8 or [-1, 1] floats) into one array.

    Args:
        images: the images, row-major; `n` must equal `rows * cols`.
        rows: number of rows.
        cols: number of columns.
        padding: pixels between tiles and around the border.
        background: the padding's grey level.

    Returns:
        A uint8 array `(rows * (h + p) + p, cols * (w + p) + p, 3)`.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_uint8(images)
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"Expected rows * cols = {rows * cols} images. Received: {n}")
    p = padding
    grid = np.full((rows * (h + p) + p, cols * (w + p) + p, c), background, dtype="uint8")
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = p + r * (h + p), p + k * (w + p)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def save_png(path, image, scale=1):
    """Writes an RGB uint8 array to a PNG file atomically; `scale` enlarges it (nearest)."""
    import cv2

    image = np.asarray(image)
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(tmp, np.ascontiguousarray(image[..., ::-1])):
            raise OSError(f"Could not write the PNG file {path}")


def conditioning_grid_inputs(vocabulary, rows, cols, latent_dim, seed=0, group="hair_color"):
    """Fixed noise and tags for a sample grid: row `i` asks for the `i`-th tag of `group`.

    Every row shares the same `cols` noise vectors and the same other tags
    (drawn once from `vocabulary.sample`), so the only thing that changes
    down a column is the asked tag.

    Returns:
        `(z, tags, row_labels)`: `z` `(rows * cols, latent_dim)`, `tags`
        `(rows * cols, len(vocabulary))`, and the tag name of each row.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((cols, latent_dim)).astype("float32")
    base = vocabulary.sample(cols, rng)
    sl = vocabulary.group_slice(group)
    names = vocabulary.names[sl]
    all_z, all_tags, labels = [], [], []
    for r in range(rows):
        tags = base.copy()
        tags[:, sl] = 0.0
        tags[:, sl.start + r % len(names)] = 1.0
        all_z.append(z)
        all_tags.append(tags)
        labels.append(names[r % len(names)])
    return np.concatenate(all_z), np.concatenate(all_tags), labels
