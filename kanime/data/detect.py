"""Anime face detection with the `lbpcascade_animeface` OpenCV cascade, and square crops.

The paper found faces with nagadomi's LBP cascade for anime faces, grew each box
1.5x around its centre (the raw box is too tight to hold the hair) and resized
the crop to 128x128. `FaceDetector.detect` finds the boxes, `grow_box` grows
one, and `crop_square` cuts and resizes it. Where the grown square reaches past
the image border, `crop_square` pads by replicating the edge pixels: mirroring
(reflect padding) would paste a second copy of an ear, an eye or a strand of
hair into the crop, which a GAN would learn; repeated edge pixels only smear
flat colour.

The cascade is downloaded once by `cascade_path` with `keras.utils.get_file`
and a pinned sha256; `cascade_path(override)` checks a local copy instead.
The cascade needs OpenCV 4 (`opencv-python-headless<5`): OpenCV 5 has no
`CascadeClassifier`.

Examples:
    >>> grow_box((10, 20, 40, 40))
    (0, 10, 60, 60)
    >>> import numpy as np
    >>> crop_square(np.zeros((50, 80, 3), "uint8"), (-10, -10, 40, 40), 16).shape
    (16, 16, 3)
"""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np

CASCADE_URL = (
    "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/"
    "4433ab1ae1166ea75acfe99eb0f18709dac329a0/lbpcascade_animeface.xml"
)
"""The upstream cascade file (MIT), pinned to a commit; it is unchanged since 2014."""

CASCADE_SHA256 = "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30"
"""The sha256 of `lbpcascade_animeface.xml`."""

GROW = 1.5
"""The paper's box growth factor."""


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cascade_path(override=None) -> str:
    """The path of a verified `lbpcascade_animeface.xml`.

    Args:
        override: a local copy of the cascade. When given it must exist and
            match `CASCADE_SHA256`; nothing is downloaded. When `None`, the file
            is downloaded once (with `keras.utils.get_file`, hash-checked) into
            the Keras cache, `~/.keras/kanime/`.
    """
    if override is not None:
        path = os.fspath(override)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Face cascade not found: {path}. Expected lbpcascade_animeface.xml "
                f"(sha256 {CASCADE_SHA256}), from {CASCADE_URL}"
            )
        actual = _sha256(path)
        if actual != CASCADE_SHA256:
            raise ValueError(
                f"Face cascade {path} has sha256 {actual}; expected {CASCADE_SHA256} "
                f"(lbpcascade_animeface.xml from {CASCADE_URL})"
            )
        return path
    from keras.utils import get_file

    return get_file(
        "lbpcascade_animeface.xml",
        CASCADE_URL,
        file_hash=CASCADE_SHA256,
        hash_algorithm="sha256",
        cache_subdir="kanime",
    )


class FaceDetector:
    """Finds anime faces with an OpenCV LBP cascade.

    Args:
        cascade_path: the cascade XML (see `cascade_path()`).
        min_size: the smallest face side searched for, in pixels.
        scale_factor: the step between detection scales.
        min_neighbors: how many overlapping hits a face needs; higher values
            give fewer false positives and miss more faces.

    The grayscale image is histogram-equalised before detection, as upstream
    recommends. Not picklable: build one per process.
    """

    def __init__(self, cascade_path, min_size=48, scale_factor=1.1, min_neighbors=5):
        if not hasattr(cv2, "CascadeClassifier"):
            raise ImportError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5); "
                'face detection needs OpenCV 4: pip install "opencv-python-headless<5"'
            )
        if min_size < 1:
            raise ValueError(f"min_size must be a positive number of pixels. Received: {min_size}")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be greater than 1. Received: {scale_factor}")
        self.cascade_path = os.fspath(cascade_path)
        if not os.path.isfile(self.cascade_path):
            raise FileNotFoundError(f"Face cascade not found: {self.cascade_path}")
        self.min_size = int(min_size)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self._cascade = cv2.CascadeClassifier(self.cascade_path)
        if self._cascade.empty():
            raise ValueError(
                f"OpenCV could not load the face cascade {self.cascade_path}; expected "
                f"lbpcascade_animeface.xml (sha256 {CASCADE_SHA256})"
            )

    def detect(self, rgb) -> list[tuple[int, int, int, int]]:
        """Face boxes `(x, y, w, h)` in an `(h, w, 3)` RGB (or `(h, w)` gray) uint8 image,
        largest first."""
        rgb = np.asarray(rgb)
        gray = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if min(gray.shape[:2]) < self.min_size:
            return []
        gray = cv2.equalizeHist(np.ascontiguousarray(gray, dtype=np.uint8))
        boxes = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        found = [tuple(int(v) for v in box) for box in np.asarray(boxes).reshape(-1, 4)]
        return sorted(found, key=lambda b: (-b[2] * b[3], b[1], b[0]))


def grow_box(box, factor: float = GROW) -> tuple[int, int, int, int]:
    """The square of side `factor * max(w, h)` around the centre of `box` `(x, y, w, h)`.

    The result may reach outside the image; `crop_square` pads it.

    >>> grow_box((0, 0, 10, 20), factor=1.0)
    (-5, 0, 20, 20)
    """
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"A box needs a positive width and height. Received: {tuple(box)}")
    side = max(1, int(round(max(w, h) * factor)))
    cx, cy = x + w / 2.0, y + h / 2.0
    return (int(np.floor(cx - side / 2.0 + 0.5)), int(np.floor(cy - side / 2.0 + 0.5)), side, side)


def crop_square(rgb, box, size: int) -> np.ndarray:
    """Cuts the square `box` `(x, y, side, side)` out of `rgb` and resizes it to `size`.

    A non-square box is first made square (side `max(w, h)`, same centre).
    Parts outside the image are filled by replicating the edge pixels. The
    resize uses `INTER_AREA` when shrinking and `INTER_CUBIC` when enlarging.

    Returns:
        `(size, size, 3)` uint8.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"Expected an (h, w, 3) image. Received shape {rgb.shape}")
    x, y, w, h = (int(v) for v in box)
    if w != h:
        x, y, w, h = grow_box((x, y, w, h), factor=1.0)
    if w <= 0:
        raise ValueError(f"A box needs a positive size. Received: {tuple(box)}")
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = x, y, x + w, y + w
    if x1 <= 0 or y1 <= 0 or x0 >= W or y0 >= H:
        raise ValueError(f"The box {tuple(box)} lies outside the {W}x{H} image")
    crop = rgb[max(y0, 0) : min(y1, H), max(x0, 0) : min(x1, W)]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y1 - H), max(0, x1 - W)
    if top or left or bottom or right:
        crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_REPLICATE)
    if w != size:
        interpolation = cv2.INTER_AREA if w > size else cv2.INTER_CUBIC
        crop = cv2.resize(crop, (size, size), interpolation=interpolation)
    return np.ascontiguousarray(crop, dtype=np.uint8)
