"""The JSON API's requests: strict parsing of bodies into checked requests.

Every way a body can be wrong raises a `RequestError` carrying an HTTP status (400 for a
malformed or invalid body) and a message that names the field, what it accepts and what it
received. Unknown fields are errors too, so a misspelt one is not silently ignored.

Bodies:

- `POST /api/generate`: `{"count": 1..MAX_IMAGES, "seeds": [int, ...], "noise": [[float,
  ...], ...] | "noise_seed": int, "tags": [name, ...] | "text, ..." | "options": {...}}`,
  every field optional. Each image has a seed (drawn at random when not given): it draws the
  image's random tag options and, unless `noise` or `noise_seed` is given, its noise.
- `POST /api/interpolate`: `{"start": END, "end": END, "frames": 2..MAX_FRAMES, "method":
  "slerp" | "lerp"}` where `END` is `{"seed": int} | {"noise": [float, ...]}` with
  `"tags": [name, ...] | "text"`.
"""

from __future__ import annotations

import dataclasses
import json
import secrets

import numpy as np

from kanime.interpolation import METHODS
from kanime.serve.options import TagOptions, _short
from kanime.tags import TagVocabulary

MAX_IMAGES = 16
"""The most images one `/api/generate` request may ask for."""
MAX_FRAMES = 32
"""The most frames one `/api/interpolate` request may ask for."""
MAX_SEED = 2**53 - 1
"""The largest seed: the largest integer a JavaScript number holds exactly."""
MAX_NOISE = 100.0
"""The largest absolute value of a noise entry (the noise is standard normal)."""
RANDOM_SEEDS = 2**31
"""Seeds drawn for a request without seeds lie in [0, RANDOM_SEEDS)."""


class RequestError(ValueError):
    """A bad request: `status` is the HTTP status to answer with, the message says why.

    Examples:
        >>> RequestError("`count` must be an integer.").status
        400
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class GenerateRequest:
    """A checked `/api/generate` body.

    Args:
        seeds: one seed per image.
        noise: `(n, latent_dim)` float32 noise given in the body, or None.
        noise_seed: the seed whose noise every image uses, or None.
        options: the tag options, resolved per image seed.
    """

    seeds: list[int]
    noise: np.ndarray | None
    noise_seed: int | None
    options: TagOptions


@dataclasses.dataclass
class Endpoint:
    """One end of a transition: a seed or a noise vector, and a multi-hot tag vector."""

    seed: int | None
    noise: np.ndarray | None
    tags: np.ndarray


@dataclasses.dataclass
class InterpolateRequest:
    """A checked `/api/interpolate` body."""

    start: Endpoint
    end: Endpoint
    frames: int
    method: str


def parse_json(raw: bytes):
    """The JSON value of a request body; `RequestError` when it is not JSON.

    `NaN` and `Infinity`, which Python's `json` accepts but JSON does not, are refused.

    Examples:
        >>> parse_json(b'{"count": 2}')
        {'count': 2}
        >>> parse_json(b'{"count": 2')
        Traceback (most recent call last):
        ...
        kanime.serve.schema.RequestError: The body is not valid JSON: Expecting ',' delimiter \
at line 1, column 12.
    """

    def refuse(name):
        raise ValueError(f"{name} is not a JSON number")

    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=refuse)
    except UnicodeDecodeError as e:
        raise RequestError(f"The body is not UTF-8 text: {e.reason} at byte {e.start}.") from e
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}"
        raise RequestError(f"The body is not valid JSON: {e.msg} at {where}.") from e
    except (ValueError, RecursionError) as e:
        raise RequestError(f"The body is not valid JSON: {e}.") from e


def parse_generate(
    body, vocabulary: TagVocabulary, latent_dim: int, draw_seed=None
) -> GenerateRequest:
    """Checks a `/api/generate` body.

    Args:
        body: the parsed JSON body.
        vocabulary: the generator's tag vocabulary.
        latent_dim: the length of a noise vector.
        draw_seed: a function `() -> int` giving a seed to each image the body gives none;
            default a random seed in [0, RANDOM_SEEDS).

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> request = parse_generate({"seeds": [3, 4], "tags": ["blonde hair"]}, PAPER_TAGS, 8)
        >>> request.seeds, request.options.choices["hair_color"]
        ([3, 4], 'blonde hair')
        >>> parse_generate({"count": 100}, PAPER_TAGS, 8)
        Traceback (most recent call last):
        ...
        kanime.serve.schema.RequestError: `count` must be at most 16 (the most images per \
request). Received: 100
    """
    _check_keys(body, "The body", {"count", "seeds", "noise", "noise_seed", "tags", "options"})
    sizes = {}
    count = None
    if "count" in body:
        count = _integer(body["count"], "`count`", 1, None)
        if count > MAX_IMAGES:
            raise RequestError(
                f"`count` must be at most {MAX_IMAGES} (the most images per request). "
                f"Received: {count}"
            )
        sizes["count"] = count
    seeds = None
    if "seeds" in body:
        seeds = _list(body["seeds"], "`seeds`", MAX_IMAGES)
        seeds = [_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
        sizes["seeds"] = len(seeds)
    noise = None
    if "noise" in body:
        if "noise_seed" in body:
            raise RequestError("Give `noise` or `noise_seed`, not both.")
        rows = _list(body["noise"], "`noise`", MAX_IMAGES)
        noise = np.stack([_vector(r, f"noise[{i}]", latent_dim) for i, r in enumerate(rows)])
        sizes["noise"] = len(noise)
    noise_seed = _seed(body["noise_seed"], "`noise_seed`") if "noise_seed" in body else None
    if len(set(sizes.values())) > 1:
        given = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise RequestError(f"`count` and the lengths of `seeds` and `noise` differ ({given}).")
    n = next(iter(sizes.values()), 1)
    if seeds is None:
        draw_seed = draw_seed or (lambda: secrets.randbelow(RANDOM_SEEDS))
        seeds = [int(draw_seed()) for _ in range(n)]
    return GenerateRequest(seeds, noise, noise_seed, _options(body, vocabulary))


def parse_interpolate(body, vocabulary: TagVocabulary, latent_dim: int) -> InterpolateRequest:
    """Checks a `/api/interpolate` body.

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> body = {"start": {"seed": 1, "tags": "red hair"}, "end": {"seed": 2}, "frames": 5}
        >>> request = parse_interpolate(body, PAPER_TAGS, 8)
        >>> request.frames, request.method, PAPER_TAGS.decode(request.start.tags)
        (5, 'slerp', ['red hair'])
    """
    _check_keys(body, "The body", {"start", "end", "frames", "method"})
    for key in ("start", "end"):
        if key not in body:
            raise RequestError(f"`{key}` is missing: give the {key} character's seed or noise.")
    frames = _integer(body.get("frames", 8), "`frames`", 2, None)
    if frames > MAX_FRAMES:
        raise RequestError(
            f"`frames` must be at most {MAX_FRAMES} (the most frames per request). "
            f"Received: {frames}"
        )
    method = body.get("method", "slerp")
    if method not in METHODS:
        raise RequestError(f"`method` must be 'slerp' or 'lerp'. Received: {_short(method)}")
    start = _endpoint(body["start"], "start", vocabulary, latent_dim)
    end = _endpoint(body["end"], "end", vocabulary, latent_dim)
    return InterpolateRequest(start, end, frames, method)


def _endpoint(value, name, vocabulary, latent_dim) -> Endpoint:
    _check_keys(value, f"`{name}`", {"seed", "noise", "tags"})
    if ("seed" in value) == ("noise" in value):
        raise RequestError(f"`{name}` needs a `seed` or a `noise` vector (one of them).")
    seed = _seed(value["seed"], f"{name}.seed") if "seed" in value else None
    noise = _vector(value["noise"], f"{name}.noise", latent_dim) if "noise" in value else None
    try:
        options = TagOptions.from_tags(vocabulary, value.get("tags", []))
    except ValueError as e:
        raise RequestError(f"{name}.tags: {e}") from e
    return Endpoint(seed, noise, options.resolve(0))


def _options(body, vocabulary) -> TagOptions:
    if "tags" in body and "options" in body:
        raise RequestError(
            "Give `tags` (the exact tags) or `options` (choices that may be random), not both."
        )
    try:
        if "options" in body:
            return TagOptions(vocabulary, body["options"])
        return TagOptions.from_tags(vocabulary, body.get("tags", []))
    except ValueError as e:
        raise RequestError(str(e)) from e


def _check_keys(value, name: str, allowed: set[str]):
    if not isinstance(value, dict):
        raise RequestError(f"{name} must be a JSON object. Received: {_short(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise RequestError(
            f"{name} has unknown fields {unknown}. Expected fields from {sorted(allowed)}."
        )


def _integer(value, name: str, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer. Received: {_short(value)}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise RequestError(f"{name} must be an integer {bounds}. Received: {_short(value)}")
    return value


def _seed(value, name: str) -> int:
    return _integer(value, f"{name} (a seed)", 0, MAX_SEED)


def _list(value, name: str, limit: int) -> list:
    if not isinstance(value, list) or not value:
        raise RequestError(f"{name} must be a non-empty list. Received: {_short(value)}")
    if len(value) > limit:
        raise RequestError(
            f"{name} must hold at most {limit} entries (the most images per request). "
            f"Received: {len(value)}"
        )
    return value


def _vector(value, name: str, length: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} entries" if isinstance(value, list) else _short(value)
        raise RequestError(
            f"{name} must be a list of {length} numbers (the generator's noise size). "
            f"Received: {got}"
        )
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise RequestError(f"{name}[{i}] must be a number. Received: {_short(x)}")
        if not abs(x) <= MAX_NOISE:  # also refuses NaN, and ints too big for a float
            raise RequestError(
                f"{name}[{i}] must be a number in [-{MAX_NOISE:g}, {MAX_NOISE:g}]. "
                f"Received: {_short(x)}"
            )
    return np.asarray(value, "float32")


__all__ = [
    "MAX_FRAMES",
    "MAX_IMAGES",
    "MAX_NOISE",
    "MAX_SEED",
    "Endpoint",
    "GenerateRequest",
    "InterpolateRequest",
    "RequestError",
    "parse_generate",
    "parse_interpolate",
    "parse_json",
]
