"""`kanime tsne`: a t-SNE picture of a face dataset's feature space.

The paper projected the Illustration2Vec features of 1,500 faces to 2-D with
t-SNE to show the structure of its data. `tsne` does the same for a `kanime
prepare` output (or procedural faces):

1. `load_faces` takes N faces chosen with a seeded generator, with their ids and tags.
2. The features: `tagger_features`, the 256-d `features` layer of a tagger made
   by `kanime fit-tagger`; without a tagger, `pixel_features`, the faces shrunk
   to 16x16 colour images and reduced to 50 dimensions by PCA (colour and layout
   only, which is what hair colour shows up in).
3. `embed` projects them to 2-D with openTSNE (exact neighbours and a fixed
   seed: the same inputs and seed give the same coordinates).
4. Two pictures: `tsne-thumbnails.png`, every face drawn small at its 2-D
   position, and `tsne-hair.png`, one point per face in the colour of its hair
   tag (grey rings for faces with no hair-colour tag); and `tsne.npz` with the
   coordinates, face ids and tags. All three are written atomically.

Only the tagger features need Keras; the rest runs on numpy, OpenCV,
matplotlib (Agg, no display) and openTSNE.

Examples:
    ```python
    from kanime.viz.tsne import tsne

    paths = tsne("data/getchu", "data/getchu/tsne", tagger="runs/tagger/tagger.keras", n=1500)
    ```
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kanime.atomic import atomic_path
from kanime.data.faces import load_faces
from kanime.data.procedural import HAIR_RGB
from kanime.data.tfrecords import list_shards
from kanime.tagger.apply import load_tagger_features, tagger_features
from kanime.tags import PAPER_TAGS

THUMBNAILS = "tsne-thumbnails.png"
HAIR = "tsne-hair.png"
ARRAYS = "tsne.npz"
FALLBACK_SIZE = 64
"""Side the faces are loaded at when no tagger says otherwise."""
NO_HAIR_COLOR = "no hair colour tag"


# --- features -------------------------------------------------------------------------------


def pixel_features(images, dims: int = 50, side: int = 16) -> np.ndarray:
    """Features without a tagger: faces shrunk to `side` x `side` colour images, then PCA.

    Each face is shrunk with area averaging, scaled to [-1, 1] and flattened
    (`side * side * 3` values); the centred values are projected on their
    first `dims` principal components (numpy SVD).

    Args:
        images: uint8 RGB images `(n, h, w, 3)`.
        dims: number of principal components kept (at most `n` and the pixel count).
        side: side of the shrunk images.

    Returns:
        float32 features `(n, min(dims, n, side * side * 3))`.

    Examples:
        >>> faces = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
        >>> pixel_features(faces, dims=4).shape
        (10, 4)
    """
    import cv2

    images = np.asarray(images)
    small = np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in images])
    x = small.reshape(len(images), -1).astype(np.float64) / 127.5 - 1.0
    x -= x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    k = min(dims, len(s))
    return (u[:, :k] * s[:k]).astype(np.float32)


# --- t-SNE ----------------------------------------------------------------------------------


def check_perplexity(n: int, perplexity: float) -> None:
    """Raises a `ValueError` unless `n` points are enough for `perplexity`.

    t-SNE matches each point's `3 * perplexity` nearest neighbours, so it needs
    more than `3 * perplexity` points.

    Examples:
        >>> check_perplexity(100, 30)
        >>> check_perplexity(50, 30)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: 50 faces are too few for perplexity 30: ... Use --perplexity 16 or less, ...
    """
    if not perplexity > 0:
        raise ValueError(f"`perplexity` must be positive. Received: perplexity={perplexity}")
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 faces. Received: n={n}")
    if n - 1 < 3 * perplexity:
        largest = (n - 1) // 3
        hint = f"Use --perplexity {largest} or less, or more faces." if largest >= 1 else ""
        raise ValueError(
            f"{n} faces are too few for perplexity {perplexity:g}: t-SNE needs more than "
            f"3 x perplexity faces ({int(3 * perplexity) + 1} here). {hint}".rstrip()
        )


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def embed(
    features, perplexity: float = 30.0, seed: int = 0, n_jobs: int | None = None, verbose=False
) -> np.ndarray:
    """Projects features to 2-D with openTSNE; the same features and seed give the same result.

    The neighbours are found exactly (not with Annoy's random trees) and the
    layout starts from the features' PCA, so the result depends only on the
    features and `seed`.

    Args:
        features: `(n, d)` features.
        perplexity: the effective number of neighbours each point keeps close.
        seed: openTSNE's `random_state`.
        n_jobs: threads; None for all cores.
        verbose: print openTSNE's progress.

    Returns:
        float32 coordinates `(n, 2)`.
    """
    from openTSNE import TSNE

    x = np.asarray(features, dtype=np.float64)
    check_perplexity(len(x), perplexity)
    model = TSNE(
        n_components=2,
        perplexity=perplexity,
        neighbors="exact",
        random_state=seed,
        n_jobs=n_jobs or _cores(),
        verbose=verbose,
    )
    return np.asarray(model.fit(x), dtype=np.float32)


# --- pictures -------------------------------------------------------------------------------


def _to_pixels(coords, side: int, margin: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Coordinates scaled to fit a canvas whose longer side is `side`, y up.

    Both axes get the same scale, so the canvas takes the layout's shape (its
    shorter side is at least `4 * margin`). Returns the pixel positions and the
    canvas `(height, width)`.
    """
    coords = np.asarray(coords, dtype=np.float64)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    spans = np.maximum(hi - lo, 1e-12)
    scale = (side - 2 * margin) / spans.max()
    width, height = (max(int(np.ceil(s * scale)) + 2 * margin, 4 * margin) for s in spans)
    width, height = min(width, side), min(height, side)
    pixels = (coords - (lo + hi) / 2) * scale + np.array([width, height]) / 2
    pixels[:, 1] = height - pixels[:, 1]  # image rows grow downward
    return pixels, (height, width)


def thumbnail_canvas(coords, images, side: int = 2000, thumb: int = 32, seed: int = 0):
    """Pastes each face, shrunk to `thumb` pixels, centred at its 2-D position.

    Both axes have the same scale; the canvas takes the layout's shape, its
    longer side `side` pixels.

    Args:
        coords: `(n, 2)` coordinates.
        images: uint8 RGB images `(n, h, w, 3)`.
        side: the canvas's longer side in pixels.
        thumb: side of each thumbnail.
        seed: the order the faces are pasted in (later ones cover earlier ones).

    Returns:
        A uint8 RGB canvas on white, `side` pixels on its longer side.

    Examples:
        >>> faces = np.zeros((3, 8, 8, 3), np.uint8)
        >>> canvas = thumbnail_canvas([[0, 0], [1, 1], [4, 0]], faces, side=80, thumb=8)
        >>> canvas.shape, int(canvas.min()), int(canvas.max())
        ((28, 80, 3), 0, 255)
    """
    import cv2

    images = np.asarray(images)
    centres, shape = _to_pixels(coords, side, margin=thumb // 2 + 1)
    canvas = np.full((*shape, 3), 255, dtype=np.uint8)
    corners = np.rint(centres).astype(int) - thumb // 2
    corners = np.clip(corners, 0, np.array([shape[1], shape[0]]) - thumb)
    for i in np.random.default_rng(seed).permutation(len(images)):
        face = images[i]
        if face.shape[:2] != (thumb, thumb):
            face = cv2.resize(face, (thumb, thumb), interpolation=cv2.INTER_AREA)
        x, y = corners[i]
        canvas[y : y + thumb, x : x + thumb] = face
    return canvas


def _save(figure, path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=figure.dpi)
    return Path(path)


TITLE_BAND = 40
"""Pixels above the thumbnails for the title."""


def plot_thumbnails(path, canvas, title: str = "") -> Path:
    """Writes a thumbnail canvas (see `thumbnail_canvas`) as a PNG, pixel for pixel.

    With a `title`, a white band `TITLE_BAND` pixels high above the canvas holds it.
    """
    from matplotlib.figure import Figure

    h, w = canvas.shape[:2]
    band = TITLE_BAND if title else 0
    figure = Figure(figsize=(w / 100, (h + band) / 100), dpi=100)
    ax = figure.add_axes((0, 0, 1, h / (h + band)))
    ax.imshow(canvas, interpolation="none")
    ax.set_axis_off()
    if title:
        figure.text(0.5, 1 - band / 2 / (h + band), title, ha="center", va="center", fontsize=14)
    return _save(figure, path)


def hair_colors(tags, tag_names) -> tuple[np.ndarray, list[str]]:
    """Each face's hair-colour tag, as an index into the returned names; -1 for none.

    The hair colours are `PAPER_TAGS`'s `hair_color` group, as far as `tag_names`
    has them; a face with several takes the highest score.

    Examples:
        >>> tags = np.zeros((2, 34), np.float32); tags[0, 1] = 1.0
        >>> index, names = hair_colors(tags, PAPER_TAGS.names)
        >>> index.tolist(), names[1]
        ([1, -1], 'brown hair')
    """
    group = PAPER_TAGS.group("hair_color").tags
    columns = [i for i, name in enumerate(tag_names) if name in group]
    names = [tag_names[i] for i in columns]
    if not columns:
        return np.full(len(tags), -1), names
    block = np.asarray(tags, dtype=np.float32)[:, columns]
    index = block.argmax(axis=1)
    return np.where(block.max(axis=1) > 0.5, index, -1), names


def plot_hair(path, coords, tags, tag_names, title: str = "", width: int = 1500) -> Path:
    """Writes a PNG of one point per face, coloured by its hair-colour tag, with a legend.

    Colours are `kanime.data.procedural.HAIR_RGB` (blonde is yellow, ...);
    faces with no hair-colour tag are grey rings, under the others.

    Args:
        path: the PNG to write.
        coords: `(n, 2)` coordinates.
        tags: `(n, T)` tags.
        tag_names: the `T` tag names.
        title: drawn above the points.
        width: width of the PNG in pixels; its height follows the layout's shape
            (between `width / 3` and `width`).
    """
    from matplotlib.figure import Figure


    coords = np.asarray(coords)
    index, names = hair_colors(tags, tag_names)
    spans = np.maximum(np.ptp(coords, axis=0), 1e-12) if len(coords) else np.ones(2)
    plot_width = width - 350  # the legend takes the rest
    height = int(np.clip(plot_width * spans[1] / spans[0] + 80, width / 3, width))
    figure = Figure(figsize=(width / 100, height / 100), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    none = index < 0
    s = max(4.0, min(40.0, 20000.0 / max(len(coords), 1)))
    if none.any():
        ax.scatter(*coords[none].T, s=s, facecolors="none", edgecolors="0.72", linewidths=0.8,
                   label=f"{NO_HAIR_COLOR} ({int(none.sum())})")  # fmt: skip
    for k, name in enumerate(names):
        mine = index == k
        if not mine.any():
            continue
        rgb = np.array(HAIR_RGB.get(name, (128, 128, 128))) / 255.0
        ax.scatter(*coords[mine].T, s=s, color=rgb, edgecolors="0.25", linewidths=0.4,
                   label=f"{name} ({int(mine.sum())})")  # fmt: skip
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    figure.legend(loc="outside right upper", markerscale=1.5, frameon=False)
    return _save(figure, path)


# --- the command ----------------------------------------------------------------------------


def tsne(
    data,
    out,
    *,
    tagger=None,
    n: int = 2000,
    perplexity: float = 30.0,
    seed: int = 0,
    image_size: int | None = None,
    thumb: int = 32,
    canvas: int = 2000,
    n_jobs: int | None = None,
    progress: bool = False,
) -> dict:
    """t-SNE pictures of N faces: thumbnails and hair colours at their 2-D positions.

    Args:
        data: a `kanime prepare` output, or `"procedural"`.
        out: the folder written: `tsne-thumbnails.png`, `tsne-hair.png`, `tsne.npz`.
        tagger: a `tagger.keras` file; its `features` layer gives the features.
            None: `pixel_features` (16x16 colour images + PCA to 50 dimensions).
        n: faces used (chosen with `seed`; a smaller dataset gives all its faces).
        perplexity: t-SNE's perplexity; needs more than `3 * perplexity` faces.
        seed: chooses the faces and seeds t-SNE; the same seed gives the same picture.
        image_size: side the faces are loaded at; default the tagger's input
            size, or 64 without a tagger.
        thumb: side of each thumbnail in pixels.
        canvas: side of `tsne-thumbnails.png` in pixels.
        n_jobs: t-SNE threads; None for all cores.
        progress: show progress.

    Returns:
        `{"thumbnails": Path, "hair": Path, "arrays": Path, "faces": m, "features": str}`.

    Raises:
        FileNotFoundError: no shards at `data`, or no file at `tagger`.
        ValueError: too few faces for `perplexity`, `n < 2`, or a tagger file that
            is not a Keras model with a `features` layer.
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 faces. Received: n={n}")
    if not perplexity > 0:
        raise ValueError(f"`perplexity` must be positive. Received: perplexity={perplexity}")
    if str(data) != "procedural":

        list_shards(data)  # a missing dataset fails before the tagger loads
    model = None
    if tagger is not None:
        model, tagger_size = load_tagger_features(tagger)
        image_size = image_size or tagger_size
    images, tags, ids, tag_names = load_faces(
        data, n, image_size or FALLBACK_SIZE, seed=seed, progress=progress
    )
    check_perplexity(len(images), perplexity)
    if model is not None:
        import cv2

        if images.shape[1] != tagger_size:
            inputs = np.stack([cv2.resize(im, (tagger_size, tagger_size)) for im in images])
        else:
            inputs = images
        features = tagger_features(model, inputs)
        kind = f"tagger features ({features.shape[1]}-d)"
    else:
        features = pixel_features(images)
        kind = f"16x16 pixels, PCA to {features.shape[1]}-d"
    coords = embed(features, perplexity=perplexity, seed=seed, n_jobs=n_jobs, verbose=progress)

    out = Path(out)
    title = f"t-SNE of {len(images)} faces of {data}: {kind}, perplexity {perplexity:g}"
    thumbs = plot_thumbnails(
        out / THUMBNAILS, thumbnail_canvas(coords, images, canvas, thumb, seed), title
    )
    hair = plot_hair(out / HAIR, coords, tags, tag_names, title=title)
    with atomic_path(out / ARRAYS, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, coords=coords, ids=ids, tags=tags, tag_names=np.array(tag_names),
                 features=np.array(kind), perplexity=perplexity, seed=seed)  # fmt: skip
    return {
        "thumbnails": thumbs,
        "hair": hair,
        "arrays": out / ARRAYS,
        "faces": len(images),
        "features": kind,
    }
