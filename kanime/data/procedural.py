"""Procedural anime-style faces drawn with OpenCV: the built-in data set.

The quick start and the tests train on these faces instead of a scraped image
collection: every face is drawn from its tags, so the tags are exact. A face
gets exactly one hair colour, one eye colour and one hair style from
`kanime.tags.PAPER_TAGS`, and each of the six "other" tags (blush, smile, open
mouth, hat, ribbon, glasses) with probability 0.25.

Faces are drawn at a higher internal resolution and shrunk with
`cv2.INTER_AREA`, which anti-aliases the edges. The same `(seed, i)` always
gives the same face, whatever the size of the set it belongs to.

Examples:
    >>> images, tags = make_faces(4, 32, seed=0)
    >>> images.shape, images.dtype, tags.shape
    ((4, 32, 32, 3), dtype('uint8'), (4, 34))
"""

from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np

from kanime.tags import EYE_COLORS, HAIR_COLORS, HAIR_STYLES, OTHER_TAGS, PAPER_TAGS

HAIR_RGB = {
    "blonde hair": (250, 214, 90),
    "brown hair": (128, 78, 44),
    "black hair": (40, 40, 50),
    "blue hair": (45, 90, 225),
    "pink hair": (255, 135, 195),
    "purple hair": (140, 75, 205),
    "green hair": (55, 170, 75),
    "red hair": (215, 35, 40),
    "silver hair": (188, 200, 220),
    "white hair": (246, 246, 246),
    "orange hair": (255, 135, 30),
    "aqua hair": (35, 215, 215),
    "gray hair": (128, 128, 128),
}
"""The RGB colour of each hair-colour tag."""

EYE_RGB = {
    "blue eyes": (40, 100, 235),
    "red eyes": (220, 30, 40),
    "brown eyes": (140, 80, 40),
    "green eyes": (40, 180, 70),
    "purple eyes": (150, 70, 210),
    "yellow eyes": (245, 210, 30),
    "pink eyes": (255, 110, 180),
    "aqua eyes": (30, 210, 210),
    "black eyes": (35, 30, 35),
    "orange eyes": (255, 130, 20),
}
"""The RGB colour of the iris for each eye-colour tag."""

# Multi-hot layout of PAPER_TAGS: [hair colour | eye colour | hair style | other].
_N_HAIR = len(HAIR_COLORS)
_N_EYE = len(EYE_COLORS)
_N_STYLE = len(HAIR_STYLES)
_HAIR = slice(0, _N_HAIR)
_EYE = slice(_N_HAIR, _N_HAIR + _N_EYE)
_STYLE = slice(_N_HAIR + _N_EYE, _N_HAIR + _N_EYE + _N_STYLE)
_OTHER0 = _N_HAIR + _N_EYE + _N_STYLE
_BLUSH, _SMILE, _OPEN, _HAT, _RIBBON, _GLASSES = (
    _OTHER0 + OTHER_TAGS.index(t)
    for t in ("blush", "smile", "open mouth", "hat", "ribbon", "glasses")
)
_LONG, _SHORT, _TWIN, _DRILL, _PONY = range(_N_STYLE)
_HAIR_TABLE = np.array([HAIR_RGB[t] for t in HAIR_COLORS], dtype=np.float64)
_EYE_TABLE = np.array([EYE_RGB[t] for t in EYE_COLORS], dtype=np.float64)

_SHIFT = 3  # fractional bits of the coordinates handed to cv2
_ONE = 1 << _SHIFT
_N_RANDOM = 40  # uniform numbers drawn per face, whatever its tags

_SKIN = np.array([255.0, 230.0, 212.0])
_WHITE = (255, 255, 255)
_LINE = (62, 40, 44)  # eyelashes, pupils, mouth line
_RIM_T = np.linspace(0, 2 * np.pi, 24, endpoint=False)
_RIM = np.stack(  # a rounded square (superellipse) for glasses frames
    [
        np.sign(np.cos(_RIM_T)) * np.abs(np.cos(_RIM_T)) ** 0.5,
        np.sign(np.sin(_RIM_T)) * np.abs(np.sin(_RIM_T)) ** 0.5,
    ],
    axis=1,
)


def _check_vocabulary(vocabulary) -> None:
    if vocabulary is not PAPER_TAGS and vocabulary != PAPER_TAGS:
        raise ValueError(
            "Procedural faces draw the paper's 34 tags only (`kanime.tags.PAPER_TAGS`). "
            f"Received: vocabulary={vocabulary!r}"
        )


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _rgb(color) -> tuple[int, int, int]:
    """A colour as the tuple of three ints in [0, 255] that cv2 takes."""
    if type(color) is tuple:
        return color
    r, g, b = (min(255, max(0, int(v + 0.5))) for v in color)
    return r, g, b


def _darker(color, f: float = 0.62) -> tuple[int, int, int]:
    return _rgb([v * f for v in color])


def _lighter(color, f: float = 0.45) -> tuple[int, int, int]:
    return _rgb([v + (255.0 - v) * f for v in color])


def _away_from(color: np.ndarray, avoid: np.ndarray, min_dist: float) -> np.ndarray:
    """`color`, or its complement-hue twin when it sits too close to `avoid`."""
    if np.linalg.norm(color - avoid) >= min_dist:
        return color
    h, s, v = colorsys.rgb_to_hsv(*(color / 255.0))
    twin = _hsv(h + 0.5, max(s, 0.55), v if abs(v - 0.5) > 0.25 else 0.9)
    if np.linalg.norm(twin - avoid) >= min_dist:
        return twin
    return _hsv(h + 0.5, max(s, 0.55), 1.2 - v)


class _Pen:
    """Draws in head-local units: origin at the face centre, 1 = nominal face radius.

    The local frame is rotated by `angle` degrees and scaled by `r` pixels.
    Coordinates are handed to cv2 with `_SHIFT` fractional bits.
    """

    def __init__(self, img: np.ndarray, cx: float, cy: float, r: float, angle: float):
        self.img = img
        self.r = r
        self.angle = angle
        a = np.deg2rad(angle)
        self._m = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) * (r * _ONE)
        self._c = np.array([cx, cy]) * _ONE
        self._set_floats()

    def _set_floats(self) -> None:
        (self._xx, self._xy), (self._yx, self._yy) = self._m.tolist()
        self._cx, self._cy = self._c.tolist()

    def pt(self, x: float, y: float) -> tuple[int, int]:
        """One local point to shifted int pixel coordinates (pure Python, fast)."""
        return (
            int(round(self._cx + x * self._xx + y * self._yx)),
            int(round(self._cy + x * self._xy + y * self._yy)),
        )

    def px(self, xy) -> np.ndarray:
        """Local points `(n, 2)` to shifted int32 pixel coordinates."""
        if isinstance(xy, np.ndarray):
            return np.rint(xy @ self._m + self._c).astype(np.int32)
        return np.array([self.pt(x, y) for x, y in xy], dtype=np.int32)

    def width(self, w: float) -> int:
        return max(1, int(w * self.r + 0.5))

    def poly(self, xy, color) -> None:
        cv2.fillPoly(self.img, [self.px(xy)], _rgb(color), cv2.LINE_8, _SHIFT)

    def line(self, xy, color, w: float, closed: bool = False) -> None:
        cv2.polylines(
            self.img, [self.px(xy)], closed, _rgb(color), self.width(w), cv2.LINE_8, _SHIFT
        )

    def ellipse(self, center, axes, color, angle=0.0, start=0, end=360, w=None) -> None:
        k = self.r * _ONE
        ax = (max(1, int(axes[0] * k + 0.5)), max(1, int(axes[1] * k + 0.5)))
        thickness = -1 if w is None else self.width(w)
        cv2.ellipse(
            self.img,
            self.pt(*center),
            ax,
            self.angle + angle,
            start,
            end,
            _rgb(color),
            thickness,
            cv2.LINE_8,
            _SHIFT,
        )

    def blend(self, shapes, color, alpha: float) -> None:
        """Draws filled ellipses `(center, axes)` blended with opacity `alpha`."""
        centers = np.array([c for c, _ in shapes], dtype=np.float64)
        reach = max(max(a) for _, a in shapes)
        pts = self.px(
            np.concatenate(
                [
                    centers - reach,
                    centers + reach,
                    centers + [[reach, -reach]],
                    centers + [[-reach, reach]],
                ]
            )
        )
        h, w = self.img.shape[:2]
        x0, y0 = np.maximum(pts.min(axis=0) // _ONE - 1, 0)
        x1, y1 = np.minimum(pts.max(axis=0) // _ONE + 2, [w, h])
        if x1 <= x0 or y1 <= y0:
            return
        roi = self.img[y0:y1, x0:x1]
        layer = roi.copy()
        sub = _Pen(layer, 0.0, 0.0, self.r, self.angle)
        sub._c = self._c - np.array([x0, y0]) * _ONE
        sub._set_floats()
        for center, axes in shapes:
            sub.ellipse(center, axes, color)
        cv2.addWeighted(layer, alpha, roi, 1.0 - alpha, 0.0, dst=roi)


def _strip(center, widths) -> np.ndarray:
    """A polygon around the polyline `center` with the given half-widths."""
    c = np.asarray(center, dtype=np.float64)
    w = np.asarray(widths, dtype=np.float64)[:, None]
    d = np.gradient(c, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    return np.concatenate([c + n * w, (c - n * w)[::-1]])


def _smooth(points, k: int = 4) -> np.ndarray:
    """Catmull-Rom resampling of a few control points into a smooth polyline."""
    p = np.asarray(points, dtype=np.float64)
    p = np.concatenate([p[:1], p, p[-1:]])
    t = np.linspace(0, 1, k, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(p[-2:-1])
    return np.concatenate(out)


@functools.cache
def _arc(center, axes, start: float, end: float, n: int = 12) -> np.ndarray:
    """Points of an elliptic arc (angles in degrees, y down); cached, read-only."""
    t = np.deg2rad(np.linspace(start, end, n))
    out = np.stack([center[0] + axes[0] * np.cos(t), center[1] + axes[1] * np.sin(t)], axis=1)
    out.flags.writeable = False
    return out


# Face outline: a round top and a pointed chin (local units).
_FACE_T = np.linspace(0, 2 * np.pi, 48, endpoint=False)
_FACE = np.stack(
    [
        0.8 * np.cos(_FACE_T) * (1 - 0.32 * np.clip(np.sin(_FACE_T), 0, 1) ** 1.5),
        np.where(np.sin(_FACE_T) > 0, 0.97, 0.9) * np.sin(_FACE_T),
    ],
    axis=1,
)
_HEAD_C = (0.0, -0.14)  # centre of the skull / hair cap
_CAP = _arc(_HEAD_C, (1.0, 1.0), 180, 360, 20)  # top of the front hair, left to right


def sample_tags(n: int, rng, vocabulary=PAPER_TAGS) -> np.ndarray:
    """The tags that procedural faces get.

    Each face has exactly one hair colour, one eye colour and one hair style,
    chosen uniformly, and each "other" tag (blush, smile, open mouth, hat,
    ribbon, glasses) on with probability 0.25.

    Args:
        n: number of faces.
        rng: a `np.random.Generator` (or a seed for `np.random.default_rng`).
        vocabulary: must be `PAPER_TAGS`; any other vocabulary raises a `ValueError`.

    Returns:
        A float32 array `(n, 34)` of multi-hot tag vectors in `PAPER_TAGS` order.
    """
    _check_vocabulary(vocabulary)
    rng = np.random.default_rng(rng)
    out = np.zeros((n, len(PAPER_TAGS)), dtype=np.float32)
    rows = np.arange(n)
    out[rows, _HAIR.start + rng.integers(0, _N_HAIR, size=n)] = 1.0
    out[rows, _EYE.start + rng.integers(0, _N_EYE, size=n)] = 1.0
    out[rows, _STYLE.start + rng.integers(0, _N_STYLE, size=n)] = 1.0
    out[:, _OTHER0:] = rng.random((n, len(OTHER_TAGS))) < 0.25
    return out


def _pick(block: np.ndarray, u: float) -> int:
    """The index of the tag that is on in an exclusive group; a random one when none is."""
    if block.max() > 0:
        return int(np.argmax(block))
    return min(int(u * len(block)), len(block) - 1)


def _internal_size(size: int) -> int:
    if size <= 64:
        return max(128, 4 * size)
    if size <= 128:
        return 3 * size
    if size <= 512:
        return 2 * size
    return size


def draw_face(tags, size: int, rng) -> np.ndarray:
    """Draws one anime-style face with the given tags.

    The same tags, size and generator state always give the same image, and
    the random numbers a face uses do not depend on its tags: drawing twice
    from equal generators with one tag toggled changes only that attribute.

    Args:
        tags: a multi-hot vector of 34 values in `PAPER_TAGS` order. In the
            exclusive groups (hair colour, eye colour, hair style) the highest
            value is drawn (the first on ties); a group that is all zeros gets a
            random tag. The "other" tags are drawn when their value is >= 0.5.
        size: the side of the square image in pixels (16 to 512 are the
            intended range; anything from 8 to 2048 works).
        rng: a `np.random.Generator` (or a seed for `np.random.default_rng`)
            for the face's position, size, background and accessory colours.

    Returns:
        A uint8 RGB image of shape `(size, size, 3)`.
    """
    tags = np.asarray(tags, dtype=np.float32).reshape(-1)
    if tags.shape[0] != len(PAPER_TAGS):
        raise ValueError(
            f"Expected a vector of {len(PAPER_TAGS)} tag values in PAPER_TAGS order. "
            f"Received shape {tags.shape}"
        )
    size = int(size)
    if not 8 <= size <= 2048:
        raise ValueError(f"`size` must be between 8 and 2048 pixels. Received: size={size}")
    rng = np.random.default_rng(rng)
    u = rng.random(_N_RANDOM)

    hair = _HAIR_TABLE[_pick(tags[_HAIR], u[0])]
    eye = _EYE_TABLE[_pick(tags[_EYE], u[1])]
    style = _pick(tags[_STYLE], u[2])
    on = tags >= 0.5
    u = u.tolist()

    s = _internal_size(size)
    img = np.empty((s, s, 3), dtype=np.uint8)
    _background(img, u[3:8])

    scale = 0.8 + 0.3 * u[8]
    r = 0.29 * s * scale
    cx = s * (0.5 + 0.16 * (u[9] - 0.5))
    cy = s * (0.55 + 0.12 * (u[10] - 0.5))
    pen = _Pen(img, cx, cy, r, angle=14.0 * (u[11] - 0.5))
    bottom = (s - cy) / r + 0.8  # below the bottom edge, whatever the rotation

    dark = _darker(hair)
    if hair.mean() < 70:  # black hair: strands show as lighter lines
        dark = _lighter(hair, 0.25)
    light = _lighter(hair, 0.5) if hair.mean() < 200 else _darker(hair, 0.88)
    skin_f = _SKIN - 14.0 * u[12] - np.array([0.0, 8.0, 10.0]) * u[13]
    skin, skin_dark = _rgb(skin_f), _rgb(skin_f * [0.82, 0.66, 0.62])
    hair_rgb = _rgb(hair)

    _back_hair(pen, style, hair_rgb, dark, bottom)
    _body(pen, skin, skin_dark, u[14:17], bottom)
    _side_hair(pen, style, hair_rgb, dark, light, bottom, side=1 if u[17] < 0.5 else -1)

    pen.poly(_FACE, skin)
    pen.line(_FACE, skin_dark, 0.02, closed=True)
    _eyes(pen, eye, hair, 0.9 + 0.2 * u[18])
    if on[_BLUSH]:
        _blush(pen)
    _mouth(pen, skin_dark, smile=bool(on[_SMILE]), open_=bool(on[_OPEN]), wide=u[19])
    _front_hair(pen, style, hair_rgb, dark, light, u[20:32])
    if style in (_TWIN, _PONY):
        _ties(pen, style, side=1 if u[17] < 0.5 else -1)
    if on[_GLASSES]:
        frame = (35, 30, 40) if u[32] < 0.6 else _rgb(_hsv(u[33], 0.7, 0.45))
        _glasses(pen, frame)
    if on[_HAT]:
        _hat(
            pen, _away_from(_hsv(u[34], 0.35 + 0.5 * u[35], 0.3 + 0.65 * u[36]), hair, 140.0), u[37]
        )
    if on[_RIBBON]:
        ribbon = _away_from(_hsv(u[38], 0.85, 0.95), hair, 150.0)
        _ribbon(pen, ribbon, side=1 if u[39] < 0.5 else -1, on_hat=bool(on[_HAT]))

    if s == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _background(img: np.ndarray, u: np.ndarray) -> None:
    """A flat colour or a vertical gradient, muted and tinted (never neutral grey)."""
    top = _hsv(u[0], 0.14 + 0.18 * u[1], 0.7 + 0.25 * u[2])
    if u[3] < 0.4:
        img[:] = _rgb(top)
        return
    bottom = _hsv(u[0] + 0.25 * (u[4] - 0.5), 0.14 + 0.18 * u[1], 0.55 + 0.4 * u[3])
    t = np.linspace(0.0, 1.0, img.shape[0])[:, None]
    img[:] = np.rint(top * (1 - t) + bottom * t).astype(np.uint8)[:, None, :]


def _back_hair(pen: _Pen, style: int, hair, dark, bottom: float) -> None:
    """The hair behind the head: the skull cap and the back of the hair style."""
    if style == _LONG:
        back = np.concatenate(
            [
                _arc(_HEAD_C, (1.04, 1.02), 180, 360, 16),
                [(1.2, 0.6), (1.32, bottom), (-1.32, bottom), (-1.2, 0.6)],
            ]
        )
        pen.poly(back, hair)
        pen.line(back, dark, 0.03, closed=True)
        for x in (-1.08, 1.08):
            pen.line([(x * 0.98, 0.35), (x * 1.06, bottom)], dark, 0.025)
    elif style == _SHORT:
        back = np.concatenate(
            [
                _arc(_HEAD_C, (1.04, 1.02), 180, 360, 16),
                [(1.05, 0.42), (0.92, 0.7), (-0.92, 0.7), (-1.05, 0.42)],
            ]
        )
        pen.poly(back, hair)
        pen.line(back, dark, 0.03, closed=True)
    else:
        pen.ellipse(_HEAD_C, (1.03, 1.02), hair)
        pen.ellipse(_HEAD_C, (1.03, 1.02), dark, start=170, end=370, w=0.03)


def _body(pen: _Pen, skin, skin_dark, u: np.ndarray, bottom: float) -> None:
    """Neck and shoulders in a muted shirt colour."""
    pen.poly([(-0.24, 0.5), (0.24, 0.5), (0.24, 1.5), (-0.24, 1.5)], skin)
    pen.poly([(-0.24, 0.7), (0.24, 0.7), (0.24, 0.95), (-0.24, 1.05)], _darker(skin_dark, 1.08))
    shirt = _rgb(_hsv(u[0], 0.2 + 0.3 * u[1], 0.35 + 0.45 * u[2]))
    body = [
        (-1.9, bottom),
        (-1.7, 1.55),
        (-1.15, 1.22),
        (-0.3, 1.13),
        (0.0, 1.5),
        (0.3, 1.13),
        (1.15, 1.22),
        (1.7, 1.55),
        (1.9, bottom),
    ]
    pen.poly(body, shirt)
    pen.line(body[1:-1], _darker(shirt, 0.6), 0.03)


@functools.cache
def _tail(style: int, sx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A twintail or ponytail on side `sx`: outline, a dark strand and a light shine."""
    if style == _TWIN:
        c = _smooth(
            [
                (sx * 0.88, -0.78),
                (sx * 1.22, -0.45),
                (sx * 1.42, 0.35),
                (sx * 1.38, 1.2),
                (sx * 1.22, 1.9),
            ],
            5,
        )
        w = 0.1 + 0.26 * np.sin(np.linspace(0.0, np.pi, len(c))) ** 0.7
        strand, shine = c[3:-2] + [sx * 0.05, 0.0], c[4:-4] - [sx * 0.1, 0.0]
    else:
        c = _smooth(
            [
                (sx * 0.7, -0.98),
                (sx * 1.1, -0.95),
                (sx * 1.36, -0.45),
                (sx * 1.42, 0.35),
                (sx * 1.3, 1.05),
                (sx * 1.08, 1.6),
            ],
            5,
        )
        w = 0.09 + 0.24 * np.sin(np.linspace(0.0, np.pi, len(c))) ** 0.6
        strand, shine = c[4:-2], c[4:-2]
    w[-1] = 0.0
    return _strip(c, w), strand, shine


def _side_hair(pen: _Pen, style: int, hair, dark, light, bottom: float, side: int) -> None:
    """Hair that hangs beside the face: long locks, tails or drills."""
    if style == _LONG:
        for sx in (-1, 1):
            lock = [
                (sx * 0.78, 0.1),
                (sx * 1.12, 0.0),
                (sx * 1.22, 0.9),
                (sx * 1.18, bottom),
                (sx * 0.9, bottom),
                (sx * 0.86, 0.9),
            ]
            pen.poly(lock, hair)
            pen.line(lock, dark, 0.03, closed=True)
            pen.line([(sx * 1.0, 0.3), (sx * 1.04, bottom)], dark, 0.025)
    elif style == _TWIN:
        for sx in (-1, 1):
            tail, strand, shine = _tail(_TWIN, sx)
            pen.poly(tail, hair)
            pen.line(tail, dark, 0.03, closed=True)
            pen.line(strand, dark, 0.025)
            pen.line(shine, light, 0.03)
    elif style == _PONY:
        tail, strand, _ = _tail(_PONY, side)
        pen.poly(tail, hair)
        pen.line(tail, dark, 0.03, closed=True)
        pen.line(strand, dark, 0.025)
    elif style == _DRILL:
        for sx in (-1, 1):
            pen.poly(
                [(sx * 0.8, -0.2), (sx * 1.1, -0.3), (sx * 1.18, 0.15), (sx * 0.9, 0.15)], hair
            )
            for k in range(4):
                y = 0.18 + 0.36 * k
                x = sx * (1.05 + 0.04 * k)
                ax = (0.26 - 0.03 * k, 0.22)
                pen.ellipse((x, y), ax, hair)
                pen.ellipse((x, y), ax, dark, w=0.03)
                pen.ellipse(
                    (x - sx * 0.04, y + 0.02),
                    (ax[0] * 0.55, ax[1] * 0.55),
                    dark,
                    start=200,
                    end=520,
                    w=0.03,
                )
            pen.ellipse((sx * 1.17, 1.54), (0.08, 0.1), dark)


def _eyes(pen: _Pen, eye, hair, size: float) -> None:
    iris_dark = _darker(eye, 0.55)
    pupil = _darker(eye, 0.25) if eye.mean() > 60 else (10, 8, 12)
    brow = _darker(hair, 0.7) if hair.mean() > 60 else _rgb(hair)
    eye = _rgb(eye)
    for sx in (-1, 1):
        ex, ey = sx * 0.36, 0.17
        k = size
        pen.ellipse((ex, ey), (0.18 * k, 0.21 * k), _WHITE)
        pen.ellipse((ex, ey + 0.02), (0.155 * k, 0.195 * k), iris_dark)
        pen.ellipse((ex, ey + 0.05), (0.14 * k, 0.16 * k), eye)
        pen.ellipse((ex, ey + 0.035), (0.045 * k, 0.075 * k), pupil)
        pen.ellipse((ex - sx * 0.06, ey - 0.07), (0.045 * k, 0.045 * k), _WHITE)
        pen.ellipse((ex + sx * 0.06, ey + 0.12), (0.02 * k, 0.02 * k), _WHITE)
        # upper lash: a thick arc with a flick at the outer corner
        pen.ellipse((ex, ey + 0.03), (0.2 * k, 0.22 * k), _LINE, start=195, end=345, w=0.06)
        pen.line([(ex + sx * 0.18 * k, ey - 0.06), (ex + sx * 0.26 * k, ey - 0.1)], _LINE, 0.04)
        pen.line(
            [(ex - sx * 0.08 * k, ey + 0.23 * k), (ex + sx * 0.1 * k, ey + 0.22 * k)],
            _darker(_LINE, 1.6),
            0.02,
        )
        pen.line(_arc((ex, ey - 0.06), (0.16, 0.1), 205, 335, 6), brow, 0.03)


def _blush(pen: _Pen) -> None:
    cheeks = [((sx * 0.5, 0.46), (0.16, 0.075)) for sx in (-1, 1)]
    pen.blend(cheeks, (255, 105, 135), 0.5)
    for sx in (-1, 1):
        for k in range(3):
            x = sx * 0.5 + 0.07 * (k - 1)
            pen.line([(x + 0.025, 0.42), (x - 0.025, 0.5)], (235, 110, 130), 0.015)


def _mouth(pen: _Pen, skin_dark, smile: bool, open_: bool, wide: float) -> None:
    pen.line([(0.0, 0.38), (-0.02, 0.42)], skin_dark, 0.02)  # nose
    w = 0.1 + 0.05 * wide
    y = 0.63
    if open_:
        red, tongue = (150, 30, 45), (240, 120, 135)
        if smile:
            pen.ellipse((0.0, y - 0.03), (w * 1.1, 0.12), red, start=0, end=180)
            pen.ellipse((0.0, y + 0.05), (w * 0.7, 0.035), tongue)
            pen.ellipse((0.0, y - 0.03), (w * 1.1, 0.12), _LINE, start=0, end=180, w=0.02)
            pen.line([(-w * 1.1, y - 0.03), (w * 1.1, y - 0.03)], _LINE, 0.02)
        else:
            pen.ellipse((0.0, y + 0.01), (w * 0.8, 0.1), red)
            pen.ellipse((0.0, y + 0.065), (w * 0.6, 0.04), tongue)
            pen.ellipse((0.0, y + 0.01), (w * 0.8, 0.1), _LINE, w=0.02)
    elif smile:
        pen.ellipse((0.0, y - 0.05), (w, 0.07), _LINE, start=20, end=160, w=0.025)
    else:
        pen.line([(-w * 0.6, y), (w * 0.6, y + 0.005)], _LINE, 0.025)


_N_TIPS = 5
_VALLEYS_X = np.linspace(0.72, -0.72, _N_TIPS + 1)  # between the bangs' tips, right to left
_TIPS_X = 0.5 * (_VALLEYS_X[:-1] + _VALLEYS_X[1:])
_TIPS_X = _TIPS_X + 0.06 * np.sign(_TIPS_X)  # tips fan out from the parting


def _front_hair(pen: _Pen, style: int, hair, dark, light, u: list) -> None:
    """Bangs over the forehead and the locks that frame the face."""
    lock = {_LONG: 0.75, _SHORT: 0.5, _TWIN: 0.4, _DRILL: 0.3, _PONY: 0.35}[style]
    xv = _VALLEYS_X.tolist()
    xt = (_TIPS_X + 0.05 * (np.asarray(u[:_N_TIPS]) - 0.5)).tolist()
    yv = -0.5 + 0.1 * u[10]
    bangs = [(0.7, -0.02)]
    for i in range(_N_TIPS):
        bangs += [(xv[i], yv), (xt[i], -0.16 - 0.12 * u[5 + i])]
    bangs += [(xv[-1], yv), (-0.7, -0.02)]
    right = [(1.0, _HEAD_C[1]), (1.0, lock - 0.1), (0.85, lock + 0.08), (0.76, 0.2)]
    left = [(-0.76, 0.2), (-0.85, lock + 0.08), (-1.0, lock - 0.1)]
    front = np.concatenate([_CAP, np.array(right + bangs + left)])
    pen.poly(front, hair)
    pen.ellipse(_HEAD_C, (0.74, 0.74), light, start=215, end=325, w=0.07)
    part = (0.06 * (u[11] - 0.5), -1.02)
    for x in xv[1:-1]:
        pen.line([part, (x * 0.8, -0.75), (x, yv + 0.02)], dark, 0.025)
    pen.line([(0.92, 0.0), (0.88, lock)], dark, 0.02)
    pen.line([(-0.92, 0.0), (-0.88, lock)], dark, 0.02)
    pen.line(front, dark, 0.03, closed=True)


def _ties(pen: _Pen, style: int, side: int) -> None:
    tie = (70, 50, 70)
    if style == _TWIN:
        for sx in (-1, 1):
            pen.ellipse((sx * 0.95, -0.72), (0.09, 0.12), tie, angle=sx * 35)
    else:
        pen.ellipse((side * 0.86, -0.98), (0.07, 0.12), tie, angle=side * 80)


def _glasses(pen: _Pen, frame) -> None:
    for sx in (-1, 1):
        rim = _RIM * [0.23, 0.19] + [sx * 0.36, 0.17]
        pen.line(rim, frame, 0.035, closed=True)
        pen.line([(sx * 0.59, 0.12), (sx * 0.78, 0.08)], frame, 0.03)
    pen.line(_arc((0.0, 0.14), (0.13, 0.05), 200, 340, 5), frame, 0.03)


def _hat(pen: _Pen, color, u: float) -> None:
    color, dark = _rgb(color), _darker(color, 0.65)
    y = -0.72
    if u < 0.5:  # brimmed hat: a wide brim and a round crown
        crown = _arc((0.0, y), (0.78, 0.75), 180, 360, 14)
        pen.ellipse((0.0, y), (1.35, 0.24), color)
        pen.ellipse((0.0, y), (1.35, 0.24), dark, w=0.035)
        pen.poly(crown, color)
        pen.line(crown, dark, 0.035)
        pen.ellipse((0.0, y + 0.02), (0.78, 0.12), dark, start=0, end=180, w=0.1)
    else:  # a beret/cap: a flat dome with a short peak
        dome = _arc((0.05, y - 0.02), (1.12, 0.6), 180, 360, 16)
        pen.poly(dome, color)
        pen.line(dome, dark, 0.035, closed=True)
        pen.ellipse((0.0, y), (1.02, 0.14), dark, start=0, end=180)
        pen.ellipse((0.1, -1.28), (0.07, 0.06), dark)


@functools.cache
def _bow(side: int, on_hat: bool) -> tuple[tuple[float, float], list[np.ndarray]]:
    """The knot centre and the four polygons (wings and tails) of a tilted bow."""
    cx, cy = (side * 0.74, -0.98) if on_hat else (side * 0.62, -0.88)
    a = np.deg2rad(side * 25)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    parts = []
    for sx in (-1, 1):
        parts.append(np.array([(0.0, 0.0), (sx * 0.42, -0.23), (sx * 0.42, 0.23)]) @ rot)
        parts.append(np.array([(0.0, 0.0), (sx * 0.2, 0.36), (sx * 0.06, 0.4)]) @ rot)
    return (cx, cy), [p + (cx, cy) for p in parts]


def _ribbon(pen: _Pen, color, side: int, on_hat: bool) -> None:
    color, dark = _rgb(color), _darker(color, 0.6)
    knot, parts = _bow(side, on_hat)
    for part in parts:
        pen.poly(part, color)
        pen.line(part, dark, 0.03, closed=True)
    pen.ellipse(knot, (0.1, 0.1), color)
    pen.ellipse(knot, (0.1, 0.1), dark, w=0.03)


def make_faces(
    n: int, size: int, seed: int = 0, vocabulary=PAPER_TAGS, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic set of procedural faces and their tags.

    Face `i` is drawn with its own generator `np.random.default_rng([seed, i])`,
    so it does not depend on `n`: the first `k` faces of a larger set equal a
    set of `k` faces with the same seed and size.

    Args:
        n: number of faces.
        size: side of the square images in pixels.
        seed: the seed of the set.
        vocabulary: must be `PAPER_TAGS`; any other vocabulary raises a `ValueError`.
        progress: show a `rich` progress bar.

    Returns:
        `(images, tags)`: uint8 images `(n, size, size, 3)` and float32 tags `(n, 34)`.
    """
    _check_vocabulary(vocabulary)
    n = int(n)
    if n < 0:
        raise ValueError(f"`n` must be non-negative. Received: n={n}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    tags = np.empty((n, len(PAPER_TAGS)), dtype=np.float32)
    indices = range(n)
    if progress:
        from rich.progress import track

        indices = track(indices, description=f"Drawing {n} faces", total=n)
    for i in indices:
        rng = np.random.default_rng([seed, i])
        tags[i] = sample_tags(1, rng)[0]
        images[i] = draw_face(tags[i], size, rng)
    return images, tags


class ProceduralFaces:
    """A fixed set of procedural anime faces with their tags.

    Args:
        num_images: number of faces.
        size: side of the square images in pixels.
        seed: the seed of the set; the same `(num_images, size, seed)` gives
            byte-identical images.

    Examples:
        >>> faces = ProceduralFaces(8, 32, seed=1)
        >>> faces.images.shape, faces.tags.shape
        ((8, 32, 32, 3), (8, 34))
        >>> x = faces.as_float()
        >>> x.dtype, float(x.min()) >= -1.0, float(x.max()) <= 1.0
        (dtype('float32'), True, True)
    """

    def __init__(self, num_images: int, size: int, seed: int = 0):
        self.num_images = int(num_images)
        self.size = int(size)
        self.seed = int(seed)
        self.vocabulary = PAPER_TAGS
        self.images, self.tags = make_faces(self.num_images, self.size, seed=self.seed)

    def __len__(self) -> int:
        return self.num_images

    def __repr__(self) -> str:
        return (
            f"ProceduralFaces({self.num_images} faces, {self.size}x{self.size}, seed={self.seed})"
        )

    def as_float(self) -> np.ndarray:
        """The images scaled to [-1, 1] as float32 (`img / 127.5 - 1`)."""
        return self.images.astype(np.float32) / 127.5 - 1.0
