"""The JSON API's requests: strict parsing of bodies into checked requests.

Every way a body can be wrong raises a `RequestError` carrying an HTTP status (400 for a
malformed or invalid body) and a message that names the field, what it accepts and what it
received. Unknown fields are errors too, so a misspelt one is not silently ignored (the
message guesses the field meant). The bodies are strict pydantic models: no `true` for an
integer, no `"3"` for a number, no `null` for an optional field.

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
import difflib
import functools
import json
import secrets
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

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
        kanime.serve.schema.RequestError: `count` must be an integer in [1, 16]. Received: 100
    """
    asked = _validate(_bodies(latent_dim)[0], body)
    draw_seed = draw_seed or (lambda: secrets.randbelow(RANDOM_SEEDS))
    n = asked.count or len(asked.noise or [0])
    seeds = asked.seeds or [int(draw_seed()) for _ in range(n)]
    noise = None if asked.noise is None else np.asarray(asked.noise, "float32")
    try:
        if "tags" in asked.model_fields_set:
            options = TagOptions.from_tags(vocabulary, asked.tags)
        else:
            options = TagOptions(vocabulary, asked.options)
    except ValueError as e:
        raise RequestError(str(e)) from e
    return GenerateRequest(seeds, noise, asked.noise_seed, options)


def parse_interpolate(body, vocabulary: TagVocabulary, latent_dim: int) -> InterpolateRequest:
    """Checks a `/api/interpolate` body.

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> body = {"start": {"seed": 1, "tags": "red hair"}, "end": {"seed": 2}, "frames": 5}
        >>> request = parse_interpolate(body, PAPER_TAGS, 8)
        >>> request.frames, request.method, PAPER_TAGS.decode(request.start.tags)
        (5, 'slerp', ['red hair'])
    """
    asked = _validate(_bodies(latent_dim)[1], body)
    ends = []
    for name, end in (("start", asked.start), ("end", asked.end)):
        try:
            tags = TagOptions.from_tags(vocabulary, end.tags).resolve(0)
        except ValueError as e:
            raise RequestError(f"{name}.tags: {e}") from e
        noise = None if end.noise is None else np.asarray(end.noise, "float32")
        ends.append(Endpoint(end.seed, noise, tags))
    return InterpolateRequest(*ends, asked.frames, asked.method)


# The fields' types: their constraints are what the messages say a field accepts, and a
# description is named after the field. Defaults of None make a field optional but not
# nullable (pydantic does not check defaults); `tags` and `options` are checked by `TagOptions`.
_Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="a seed")]
_Number = Annotated[float, Field(ge=-MAX_NOISE, le=MAX_NOISE, allow_inf_nan=False)]
_IMAGES = Field(min_length=1, max_length=MAX_IMAGES)


class _Body(BaseModel, strict=True, extra="forbid"): ...


@functools.cache
def _bodies(latent_dim: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The models of the `/api/generate` and `/api/interpolate` bodies for a noise size."""
    Vector = Annotated[list[_Number], Field(min_length=latent_dim, max_length=latent_dim)]

    class GenerateBody(_Body):
        count: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = None
        seeds: Annotated[list[_Seed], _IMAGES] = None
        noise: Annotated[list[Vector], _IMAGES] = None
        noise_seed: _Seed = None
        tags: Any = []
        options: Any = None

        @model_validator(mode="after")
        def _agree(self):
            if {"noise", "noise_seed"} <= self.model_fields_set:
                raise ValueError("Give `noise` or `noise_seed`, not both.")
            sizes = {"count": self.count, "seeds": self.seeds, "noise": self.noise}
            sizes = {k: v if k == "count" else len(v) for k, v in sizes.items() if v is not None}
            if len(set(sizes.values())) > 1:
                s = ", ".join(f"{k}: {v}" for k, v in sizes.items())
                raise ValueError(f"`count` and the lengths of `seeds` and `noise` differ ({s}).")
            if {"tags", "options"} <= self.model_fields_set:
                raise ValueError(
                    "Give `tags` (the exact tags) or `options` (choices that may be random), "
                    "not both."
                )
            return self

    class EndBody(_Body):
        seed: _Seed = None
        noise: Vector = None
        tags: Any = []

        @model_validator(mode="after")
        def _one(self):
            if (self.seed is None) == (self.noise is None):
                raise ValueError("needs a `seed` or a `noise` vector (one of them).")
            return self

    class InterpolateBody(_Body):
        start: EndBody
        end: EndBody
        frames: Annotated[int, Field(ge=2, le=MAX_FRAMES)] = 8
        method: Literal[METHODS] = "slerp"

    return GenerateBody, InterpolateBody


def _validate(model: type[BaseModel], body):
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise RequestError(_message(_schema(model), e.errors())) from e


@functools.cache
def _schema(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


def _message(schema: dict, errors: list) -> str:
    """A message for the first of pydantic's `errors` (unknown fields first): the field's path
    (`count`, `seeds[0]`, `start.seed`), what it accepts (from its `schema`), what it received."""
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    kind, loc, got = error["type"], error["loc"], error["input"]
    parent = loc[:-1] if kind == "extra_forbidden" else loc
    node = schema
    for part in parent:
        node = node.get("items", {}) if isinstance(part, int) else node["properties"][part]
        node = schema["$defs"][node["$ref"].split("/")[-1]] if "$ref" in node else node
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parent).lstrip(".")
    where = where if len(parent) > 1 else f"`{where}`" if parent else "The body"
    if kind == "extra_forbidden":
        fields = sorted(node["properties"])
        unknown = [e["loc"] for e in errors if e["type"] == kind and e["loc"][:-1] == parent]
        unknown = sorted(str(x[-1]) for x in unknown)
        close = {name: difflib.get_close_matches(name, fields, n=1) for name in unknown}
        guesses = [repr(c[0]) + f" for {u!r}" * (len(unknown) > 1) for u, c in close.items() if c]
        hint = f" Did you mean {', '.join(guesses)}?" if guesses else ""
        return f"{where} has unknown fields {unknown}.{hint} Expected fields from {fields}."
    where += f" ({node['description']})" if "description" in node else ""
    if kind == "value_error":  # from a model validator
        return f"{where} {error['ctx']['error']}" if loc else str(error["ctx"]["error"])
    if kind == "missing":
        return f"{where} is missing: it must be {_expected(node)}."
    got = f"{len(got)} entries" if kind in ("too_short", "too_long") else _short(got)
    return f"{where} must be {_expected(node)}. Received: {got}"


def _expected(node: dict) -> str:
    """What a value of the JSON schema `node` of a body must be, e.g. "an integer in [1, 16]"."""
    if "enum" in node:
        return " or ".join(map(repr, node["enum"]))
    if node.get("type") == "object":
        return f"a JSON object with fields from {sorted(node['properties'])}"
    if node.get("type") == "array":  # a noise vector, or a list of seeds or of noise vectors
        if node["minItems"] == node["maxItems"]:
            return f"a list of {node['maxItems']} numbers"
        return f"a non-empty list of at most {node['maxItems']} entries"
    if "minimum" not in node:  # only from Python: JSON has no key that is not a string
        return "a string key"
    low, high = (int(x) if x == int(x) else x for x in (node["minimum"], node["maximum"]))
    return f"{'an integer' if node['type'] == 'integer' else 'a number'} in [{low}, {high}]"


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
