"""How much checkerboard a set of images carries, read off their power spectrum.

A generator that upsamples by sub-pixel convolution (pixel shuffle) and has not
learnt to make the sub-pixels of an output pixel agree paints a fine periodic
pattern: a checkerboard with a period of 2 or 4 pixels. In the images' mean power
spectrum that pattern is a set of sharp peaks at the frequencies `side / 2` and
`side / 4` (and their combinations), where the spectrum of a natural image is
smooth. `checkerboard_score` is the mean height of those peaks over their eight
neighbours: about 1 for real faces, well above 1 for a checkerboard.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> smooth = rng.normal(size=(8, 64, 64, 3)).cumsum(1).cumsum(2)
    >>> smooth = smooth / np.abs(smooth).max()
    >>> board = smooth + 0.2 * (np.indices((64, 64)).sum(0) % 2)[None, ..., None]
    >>> bool(checkerboard_score(smooth) < 2 < checkerboard_score(board))
    True
"""

import numpy as np

PERIODS = (2, 4)  # the pixel periods of a sub-pixel pattern that the score looks for


def _peak_frequencies(side):
    steps = sorted({side // p for p in PERIODS if side % p == 0})
    axis = sorted({0, *steps, *(side - s for s in steps)})
    return [(u, v) for u in axis for v in axis if (u, v) != (0, 0)]


def checkerboard_score(images) -> float:
    """The mean height of the spectrum's sub-pixel peaks over their neighbours.

    Args:
        images: `(n, side, side, channels)` or `(n, side, side)` images, in any
            value range.

    Returns:
        About 1 where the mean power spectrum is smooth at the frequencies of a
        2- or 4-pixel period; larger with a checkerboard.
    """
    x = np.asarray(images, dtype="float64")
    if x.ndim == 4:
        x = x.mean(axis=-1)
    if x.ndim != 3 or x.shape[1] != x.shape[2] or x.shape[1] < 8:
        raise ValueError(
            f"Expected square images (n, side, side[, channels]) with side >= 8. "
            f"Received shape {np.shape(images)}"
        )
    side = x.shape[1]
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0)
    ratios = []
    for u, v in _peak_frequencies(side):
        around = [
            power[(u + du) % side, (v + dv) % side]
            for du in (-1, 0, 1)
            for dv in (-1, 0, 1)
            if (du, dv) != (0, 0)
        ]
        ratios.append(power[u, v] / max(np.mean(around), 1e-30))
    return float(np.mean(ratios))
