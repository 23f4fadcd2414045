"""Robust image decoding for data preparation: any common file in, RGB uint8 out.

`decode_image` turns a JPEG, PNG, WebP, BMP or GIF into an `(h, w, 3)` uint8 RGB
array: the EXIF orientation is applied, grayscale, palette, 16-bit, CMYK and
alpha images are converted (alpha is composited over white), and a GIF gives its
first frame. Anything that cannot be used raises `BadImage`, whose `reason` is a
short machine-friendly string ("empty file", "not an image", "truncated",
"too small (1x1)", "decompression bomb (N pixels)", "unsupported mode (X)", ...)
and whose message names the file. Data preparation records that reason in
`rejected.jsonl` and goes on.

Examples:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("LA", (40, 32), (0, 0)).save(path)
    >>> decode_image(path).shape
    (32, 40, 3)
    >>> open(path, "wb").close()
    >>> try:
    ...     decode_image(path)
    ... except BadImage as e:
    ...     print(e.reason)
    empty file
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
"""File endings `scan` picks up (compared case-insensitively)."""

MAX_PIXELS = 64_000_000
"""Default limit on width x height: bigger images are rejected as decompression bombs."""

MIN_SIZE = 32
"""Default minimum length of an image's short side, in pixels."""

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT = re.compile(r"^I;16[BLN]?$")


class BadImage(ValueError):  # noqa: N818 (the name the CLI and docs use)
    """An input file that cannot be used as an image.

    Attributes:
        path: the file, as a string.
        reason: a short machine-friendly reason, e.g. `"truncated"` or
            `"too small (1x1)"`; `kind` is the same without the part in brackets.
    """

    def __init__(self, path, reason: str, detail: str | None = None):
        self.path = os.fspath(path)
        self.reason = reason
        self.detail = detail
        message = f"Cannot use image {self.path}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)

    @property
    def kind(self) -> str:
        return reason_kind(self.reason)

    def __reduce__(self):  # keeps `reason` when sent back from a worker process
        return (type(self), (self.path, self.reason, self.detail))


def reason_kind(reason: str) -> str:
    """A reason without its bracketed detail: `"too small (1x1)"` -> `"too small"`.

    >>> reason_kind("decompression bomb (90000000 pixels)")
    'decompression bomb'
    """
    return reason.split(" (", 1)[0]


def scan(src) -> list[Path]:
    """All image files under `src` (recursively, by suffix, any case), sorted.

    Hidden files and folders (names starting with ".") are skipped.
    """
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"Image folder not found: {src}")
    if src.is_file():
        return [src] if src.suffix.lower() in IMAGE_SUFFIXES else []
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(root) / name)
    return sorted(found)


def decode_image(path, *, min_size: int = MIN_SIZE, max_pixels: int | None = MAX_PIXELS):
    """Decodes `path` to an `(h, w, 3)` uint8 RGB array, or raises `BadImage`.

    Args:
        path: the image file.
        min_size: the shortest accepted side, in pixels.
        max_pixels: the largest accepted width x height, checked from the header
            before any pixel is decoded; `None` for no limit (Pillow's own limit
            still applies).
    """
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise BadImage(path, "empty file")
    except OSError as e:
        raise BadImage(path, "unreadable", str(e)) from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise BadImage(
                        path,
                        f"decompression bomb ({width * height} pixels)",
                        f"{width}x{height}, the limit is {max_pixels} pixels",
                    )
                image.load()  # an animated GIF, WebP or PNG opens at its first frame
                return _to_rgb(path, image, min_size)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        count = f" ({pixels.group(1)} pixels)" if pixels else ""
        raise BadImage(path, f"decompression bomb{count}", str(e)) from e
    except UnidentifiedImageError as e:
        raise BadImage(path, "not an image", "no image format recognised") from e
    except MemoryError as e:
        raise BadImage(path, "out of memory") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        text = str(e)
        if "truncated" in text.lower() or isinstance(e, EOFError):
            raise BadImage(path, "truncated", text) from e
        if "decompressed data too large" in text.lower():
            raise BadImage(path, "decompression bomb (text chunk)", text) from e
        raise BadImage(path, "corrupt", f"{type(e).__name__}: {text}") from e


def _to_rgb(path, image, min_size):
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: keep the stored orientation
        pass
    width, height = image.size
    if min(width, height) < min_size:
        raise BadImage(path, f"too small ({width}x{height})", f"the minimum side is {min_size}")
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    elif _SIXTEEN_BIT.match(mode) or mode in ("I", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image), mode), "L")
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except (ValueError, OSError) as e:
            raise BadImage(path, f"unsupported mode ({mode})", str(e)) from e
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise BadImage(path, f"unsupported mode ({mode})", f"decoded shape {array.shape}")
    return np.ascontiguousarray(array)


def _to_uint8(values, mode):
    """Scales 16-bit (or 32-bit / float) grayscale to 0..255."""
    values = values.astype(np.float64)
    if mode == "F" and values.size and np.nanmax(values) <= 1.0:
        values = values * 255.0
    elif mode != "F" and values.size and (mode.startswith("I;16") or values.max() > 255):
        values = values / 257.0
    return np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
