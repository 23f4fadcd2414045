"""The Frechet Inception Distance (FID) between generated and real faces.

FID (Heusel et al., 2017) fits a Gaussian to the features a network gives for
each set of images and measures the Frechet (2-Wasserstein) distance between
the two Gaussians:

    FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

The features are the 2048-d average-pooled output of InceptionV3
(`keras.applications.InceptionV3(include_top=False, pooling="avg")`), with
images resized to 299 x 299 and scaled to [-1, 1] as Inception's
`preprocess_input` does. Its ImageNet weights come through Keras's download
cache (`~/.keras/models/`); `weights_path` loads a local copy instead.

`FeatureExtractor` wraps any Keras model of images to vectors, so tests run the
whole path with a small network with random weights, and `tagger_extractor`
uses the 256-d `features` layer of a kanime tagger: a figure for machines that
cannot download Inception, comparable only with itself.

Real-image statistics are cached (`real_statistics`) under a hash of what they
come from: the data's files (names, sizes, modification times) or the procedural
drawing code, the number of faces, their size, the seed that chose them and the
feature network's weights.

Examples:
    >>> import numpy as np
    >>> a = Statistics(np.zeros(2), np.eye(2), 100)
    >>> b = Statistics(np.array([3.0, 0.0]), np.eye(2), 100)
    >>> round(frechet_distance(a, b), 6), round(frechet_distance(a, a), 6)
    (9.0, 0.0)

Reference:
    Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium", NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from kanime.atomic import atomic_path
from kanime.data import procedural
from kanime.data.faces import load_faces
from kanime.data.tfrecords import count_records, list_shards
from kanime.tagger.apply import load_tagger_features

INCEPTION_SIZE = 299
"""The side, in pixels, InceptionV3 takes for FID."""

INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
"""The name of the Keras InceptionV3 weights (no top) in the Keras cache."""

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

STATS_VERSION = 1
"""Bumped when the way features or statistics are computed changes (old caches miss)."""


# --- the distance ---------------------------------------------------------------------------


@dataclasses.dataclass
class Statistics:
    """The mean and covariance of a set of feature vectors.

    Args:
        mu: the mean, `(d,)` float64.
        sigma: the covariance, `(d, d)` float64 (unbiased, `n - 1` in the denominator).
        count: how many vectors they come from.

    Examples:
        >>> stats = Statistics.of(np.array([[0.0, 1.0], [2.0, 3.0]]))
        >>> stats.mu.tolist(), stats.sigma.tolist(), stats.count
        ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]], 2)
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    @classmethod
    def of(cls, features) -> Statistics:
        """The statistics of `(n, d)` features (n >= 2)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(
                f"Expected features of shape (n, d) with n >= 2. Received shape {x.shape}"
            )
        return cls(x.mean(axis=0), np.cov(x, rowvar=False), len(x))

    def save(self, path) -> None:
        """Writes the statistics as `.npz`, atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, mu=self.mu, sigma=self.sigma, count=self.count)

    @classmethod
    def load(cls, path) -> Statistics:
        """Reads statistics that `save` wrote."""
        with np.load(path) as f:
            return cls(f["mu"], f["sigma"], int(f["count"]))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: Statistics, b: Statistics) -> float:
    """The Frechet distance between the Gaussians of two `Statistics`.

    `tr((S_a S_b)^(1/2))` is computed as the sum of the square roots of the
    eigenvalues of `S_a^(1/2) S_b S_a^(1/2)`, a symmetric positive semi-definite
    matrix with the same eigenvalues as `S_a S_b`: no complex numbers, and the
    tiny negative eigenvalues rounding leaves are clipped to 0. The result is
    clipped at 0 too.

    Args:
        a: the statistics of one set.
        b: the statistics of the other set (features of the same size as `a`).

    Examples:
        >>> one_d = lambda m, s: Statistics(np.array([m]), np.array([[s * s]]), 2)
        >>> round(frechet_distance(one_d(1.0, 2.0), one_d(4.0, 0.5)), 6)  # (1-4)^2 + (2-0.5)^2
        11.25
    """
    mu_a, mu_b = np.asarray(a.mu, np.float64), np.asarray(b.mu, np.float64)
    s_a, s_b = np.asarray(a.sigma, np.float64), np.asarray(b.sigma, np.float64)
    if mu_a.shape != mu_b.shape or s_a.shape != s_b.shape or s_a.shape != mu_a.shape * 2:
        raise ValueError(
            "The statistics have features of different sizes: means "
            f"{mu_a.shape} and {mu_b.shape}, covariances {s_a.shape} and {s_b.shape}."
        )
    root_a = _psd_sqrt(s_a)
    middle = root_a @ s_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    cross = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * cross
    return float(max(distance, 0.0))


# --- features -------------------------------------------------------------------------------


class FeatureExtractor:
    """Feature vectors for uint8 RGB images from a Keras model.

    Images are resized to the model's input side with OpenCV (`INTER_LINEAR`
    to enlarge, `INTER_AREA` to shrink) and scaled to [-1, 1], one batch at a
    time, so ten thousand images never sit in memory at 299 px.

    Args:
        model: a Keras model of `(n, s, s, 3)` images in [-1, 1] to `(n, d)` features.
        name: what the features are called in reports (e.g. `"inception_v3"`).
        image_size: the side the images are resized to; default the model's input side.
        batch_size: images per model call.

    Attributes:
        fingerprint: a hash of the model's weights, input side and name (it keys
            the cached real statistics).

    Examples:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
        ...                         keras.layers.GlobalAveragePooling2D()])
        >>> extractor = FeatureExtractor(net, name="tiny")
        >>> extractor.features(np.zeros((5, 32, 32, 3), np.uint8)).shape
        (5, 4)
    """

    def __init__(self, model, name: str | None = None, image_size=None, batch_size: int = 50):
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(
                f"The feature model {model.name!r} must take RGB images (n, s, s, 3). "
                f"Received input shape {shape}"
            )
        image_size = image_size or shape[1]
        if image_size is None:
            raise ValueError(
                f"The feature model {model.name!r} takes images of any size: pass image_size."
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
        self.model = model
        self.name = name or model.name
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.name}, {self.image_size}px)"

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.name}:{self.image_size}".encode())
        for weights in self.model.get_weights():
            digest.update(str(weights.shape).encode())
            digest.update(np.ascontiguousarray(weights).tobytes())
        return digest.hexdigest()[:16]

    def preprocess(self, images) -> np.ndarray:
        """uint8 RGB images resized to the model's side, as float32 in [-1, 1]."""
        import cv2

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(
                "Expected uint8 RGB images of shape (n, h, w, 3). Received: "
                f"dtype={images.dtype}, shape={images.shape}"
            )
        side = self.image_size
        out = np.empty((len(images), side, side, 3), np.float32)
        for i, image in enumerate(images):
            if image.shape[:2] != (side, side):
                shrink = image.shape[0] > side or image.shape[1] > side
                method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                image = cv2.resize(image, (side, side), interpolation=method)
            out[i] = image
        return out / 127.5 - 1.0

    def features(self, images, progress=None) -> np.ndarray:
        """`(n, d)` float32 features of uint8 images `(n, h, w, 3)`.

        Args:
            images: the images.
            progress: a callable given the number of images done after each batch.
        """
        batches = []
        for start in range(0, len(images), self.batch_size):
            batch = self.preprocess(images[start : start + self.batch_size])
            out = np.asarray(self.model.predict_on_batch(batch), dtype=np.float32)
            if out.ndim != 2:
                raise ValueError(
                    f"The feature model {self.name!r} must give (n, d) vectors. Received "
                    f"shape {out.shape}; add pooling (e.g. pooling='avg')."
                )
            batches.append(out)
            if progress is not None:
                progress(len(batch))
        if not batches:
            raise ValueError("No images to compute features of.")
        return np.concatenate(batches)


def inception_extractor(weights_path=None, batch_size: int = 50) -> FeatureExtractor:
    """InceptionV3's 2048-d pool features, the network FID is defined with.

    Args:
        weights_path: a local copy of the Keras InceptionV3 weights without the
            top (`inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`, or a
            `.weights.h5` saved from `InceptionV3(include_top=False)`). None: the
            ImageNet weights, downloaded once into Keras's cache.
        batch_size: images per call.

    Raises:
        FileNotFoundError: `weights_path` does not exist.
        ValueError: the weights do not load into InceptionV3 (no top).
        RuntimeError: the download failed; the message says how to pass a local copy.
    """
    import keras

    if weights_path is not None:
        weights_path = os.fspath(weights_path)
        if not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"Inception weights not found: {weights_path}. Expected {INCEPTION_FILE} "
                "(keras.applications InceptionV3 without the top)."
            )
        with open(weights_path, "rb") as f:
            if f.read(8) != HDF5_SIGNATURE:
                raise ValueError(
                    f"{weights_path} is not an HDF5 weights file. Expected {INCEPTION_FILE} "
                    "(keras.applications InceptionV3 without the top)."
                )
    try:
        model = keras.applications.InceptionV3(
            include_top=False,
            weights=weights_path or "imagenet",
            input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
            pooling="avg",
        )
    except Exception as e:  # noqa: BLE001 - Keras raises bare Exceptions for failed downloads
        if weights_path is not None:
            raise ValueError(
                f"{weights_path}: not InceptionV3 weights without the top "
                f"({type(e).__name__}: {e}). Expected {INCEPTION_FILE}."
            ) from e
        if "fetch failure" in str(e) or isinstance(e, OSError):
            raise RuntimeError(
                f"Could not download the InceptionV3 weights ({e}). Put {INCEPTION_FILE} in "
                "~/.keras/models/ or pass its path (--inception-weights PATH)."
            ) from e
        raise
    return FeatureExtractor(model, name="inception_v3", batch_size=batch_size)


def tagger_extractor(tagger, batch_size: int = 256) -> FeatureExtractor:
    """The 256-d `features` layer of a kanime tagger as FID features.

    These features know anime faces but are not Inception's: a distance with
    them compares runs evaluated with the same tagger, not published FIDs.

    Args:
        tagger: a `tagger.keras` file or its `kanime fit-tagger` run folder.
        batch_size: images per call.
    """

    model, _ = load_tagger_features(tagger)
    return FeatureExtractor(model, name="tagger", batch_size=batch_size)


# --- real-image statistics, cached ----------------------------------------------------------


def default_cache_dir() -> Path:
    """`$KERAS_HOME/kanime/fid` (`~/.keras/kanime/fid` by default), beside Keras's downloads."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "kanime" / "fid"


def _file_digest(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def data_inputs(data, n: int, size: int, seed: int) -> dict:
    """What the `n` real faces of `data` come from, for the statistics cache key.

    For `"procedural"`: the drawing code's hash and the seed. For prepared shards:
    each shard's name, size and modification time, and the seed that chose the faces.
    `n` is the number of faces used: at most the faces the data holds.

    Examples:
        >>> inputs = data_inputs("procedural", 100, 32, seed=1)
        >>> inputs["source"], inputs["n"], inputs["size"], inputs["seed"]
        ('procedural', 100, 32, 1)
    """
    if str(data) == "procedural":

        return {
            "source": "procedural",
            "code": _file_digest(procedural.__file__),
            "n": int(n),
            "size": int(size),
            "seed": int(seed),
        }

    files = list_shards(data)
    shards = []
    for file in files:
        stat = os.stat(file)
        shards.append([os.path.abspath(file), stat.st_size, stat.st_mtime_ns])
    return {
        "source": "tfrecord",
        "shards": shards,
        "n": min(int(n), count_records(files)),
        "size": int(size),
        "seed": int(seed),
    }


def cache_key(inputs: dict, extractor: FeatureExtractor) -> str:
    """The cache file stem for the real statistics of `inputs` with `extractor`'s features."""
    key = {"version": STATS_VERSION, "data": inputs, "features": extractor.fingerprint}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def real_statistics(
    data, n: int, size: int, extractor: FeatureExtractor, seed: int = 0,
    cache_dir=None, faces=None, progress=None,
) -> tuple[Statistics, bool]:  # fmt: skip
    """The feature statistics of `n` real faces, read from the cache when there.

    Args:
        data: a `kanime prepare` output (folder, pattern or shard) or `"procedural"`.
        n: number of faces (a dataset with fewer gives all of them).
        size: the side the faces are loaded at (the generator's).
        extractor: a `FeatureExtractor`.
        seed: chooses the faces of a dataset; draws the procedural ones.
        cache_dir: where statistics are cached; default `default_cache_dir()`.
            False: no cache.
        faces: a function `() -> (images, tags)` of the faces, when the caller
            already loads them; default `kanime.data.faces.load_faces`.
        progress: a callable given the number of images done after each batch.

    Returns:
        `(statistics, cached)`: `cached` is True when they came from the cache.
    """
    inputs = data_inputs(data, n, size, seed)
    path = None
    if cache_dir is not False:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"{cache_key(inputs, extractor)}.npz"
        if path.is_file():
            try:
                return Statistics.load(path), True
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is recomputed and replaced
    if faces is None:

        images = load_faces(data, n, size, seed=seed)[0]
    else:
        images = faces()[0]
    stats = Statistics.of(extractor.features(images, progress=progress))
    if path is not None:
        stats.save(path)
        with atomic_path(path.with_suffix(".json")) as tmp:
            Path(tmp).write_text(json.dumps({"data": inputs, "features": extractor.name}, indent=2))
    return stats, False


__all__ = [
    "FeatureExtractor",
    "Statistics",
    "data_inputs",
    "default_cache_dir",
    "frechet_distance",
    "inception_extractor",
    "real_statistics",
    "tagger_extractor",
]
