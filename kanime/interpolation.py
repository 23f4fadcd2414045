"""Transitions between two characters: interpolated noise and tags.

A character is a noise vector `z` and a tag vector. A transition of `frames` steps runs `t`
from 0 to 1: the noise moves along a great circle (`"slerp"`, spherical linear interpolation,
which keeps the norm of standard normal noise near where the generator was trained) or along a
straight line (`"lerp"`), and the tags always move linearly, so a tag fades in or out over
the transition.
"""

from __future__ import annotations

import numpy as np

METHODS = ("slerp", "lerp")


def lerp(a, b, t) -> np.ndarray:
    """Points `(1 - t) * a + t * b` for each `t`: `(len(t), d)` float32.

    Examples:
        >>> lerp([0.0, 2.0], [2.0, 0.0], [0.0, 0.5, 1.0]).tolist()
        [[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]]
    """
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    t = np.asarray(t, "float64").reshape(-1, 1)
    return ((1.0 - t) * a + t * b).astype("float32")


def slerp(a, b, t) -> np.ndarray:
    """Spherical linear interpolation from `a` to `b` for each `t`: `(len(t), d)` float32.

    The standard form `sin((1 - t) w) / sin(w) * a + sin(t w) / sin(w) * b`, with `w` the
    angle between `a` and `b`: the path keeps the length of Gaussian noise, where a straight
    line between two noise vectors passes through shorter, atypical ones. `t = 0` gives `a`
    and `t = 1` gives `b`. Parallel (or zero) vectors fall back to `lerp`.

    Examples:
        >>> slerp([1.0, 0.0], [0.0, 1.0], [0.0, 0.5, 1.0]).astype("float64").round(4).tolist()
        [[1.0, 0.0], [0.7071, 0.7071], [0.0, 1.0]]
    """
    a = np.asarray(a, "float64").reshape(-1)
    b = np.asarray(b, "float64").reshape(-1)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    omega = np.arccos(np.clip(a @ b / norms, -1.0, 1.0)) if norms > 0 else 0.0
    if np.sin(omega) < 1e-6:
        return lerp(a, b, t)
    t = np.asarray(t, "float64").reshape(-1, 1)
    wa, wb = np.sin((1.0 - t) * omega) / np.sin(omega), np.sin(t * omega) / np.sin(omega)
    return (wa * a + wb * b).astype("float32")


def transition(z_start, z_end, tags_start, tags_end, frames: int, method: str = "slerp"):
    """Noise and tags of a `frames`-step transition between two characters.

    Args:
        z_start: the first character's noise, `(latent_dim,)`.
        z_end: the last character's noise, `(latent_dim,)`.
        tags_start: the first character's tag vector, `(T,)`.
        tags_end: the last character's tag vector, `(T,)`.
        frames: number of frames, at least 2; the first and last are the two characters.
        method: `"slerp"` or `"lerp"`, how the noise moves (the tags always move linearly).

    Returns:
        `(t, z, tags)`: `t` the `frames` positions in [0, 1], `z` `(frames, latent_dim)` and
        `tags` `(frames, T)`, both float32.

    Examples:
        >>> t, z, tags = transition([1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], frames=3)
        >>> t.tolist(), tags.tolist()
        ([0.0, 0.5, 1.0], [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"`frames` must be an integer >= 2. Received: frames={frames!r}")
    for name, a, b in (("z", z_start, z_end), ("tags", tags_start, tags_end)):
        if np.shape(a) != np.shape(b) or np.ndim(a) != 1:
            raise ValueError(
                f"The start and end {name} must be vectors of one length. "
                f"Received shapes {np.shape(a)} and {np.shape(b)}"
            )
    t = np.linspace(0.0, 1.0, int(frames))
    z = (slerp if method == "slerp" else lerp)(z_start, z_end, t)
    return t, z, lerp(tags_start, tags_end, t)


__all__ = ["METHODS", "lerp", "slerp", "transition"]
