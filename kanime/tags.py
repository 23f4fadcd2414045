"""The tag vocabulary: groups, names, multi-hot encoding and fake-tag sampling.

One `TagVocabulary` object is shared by data preparation, the models, training,
evaluation and the web page. `PAPER_TAGS` is the 34-tag vocabulary of Jin et al.
(2017); a recipe may define another one with `TagVocabulary.from_config`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence

import numpy as np

SAMPLING_MODES = ("one", "independent")


@dataclasses.dataclass(frozen=True)
class TagGroup:
    """A group of tags that share a labelling rule and a sampling rule.

    Args:
        name: the group's name, e.g. `"hair_color"`.
        tags: the tag names, in vocabulary order, e.g. `("blonde hair", ...)`.
        exclusive: when True, a face carries at most one tag of the group:
            the most confident score is kept if it passes `threshold`
            (the paper's rule for hair colour, eye colour and hair style).
            When False, each tag is kept on its own when it passes `threshold`.
        threshold: the score a tag must reach to be kept (0.25 in the paper).
        sampling: how fake tags are drawn during training: `"one"` picks
            exactly one tag uniformly; `"independent"` turns each tag on with
            probability `probability`.
        probability: the on-probability used with `sampling="independent"`.

    Examples:
        >>> group = TagGroup("eyes", ("blue eyes", "red eyes"), exclusive=True)
        >>> group.size
        2
    """

    name: str
    tags: tuple[str, ...]
    exclusive: bool = False
    threshold: float = 0.25
    sampling: str = "independent"
    probability: float = 0.25

    def __post_init__(self):
        object.__setattr__(self, "tags", tuple(self.tags))
        if not self.tags:
            raise ValueError(f"Tag group {self.name!r} has no tags. Received: tags={self.tags}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(
                f"Tag group {self.name!r}: `sampling` must be one of {SAMPLING_MODES}. "
                f"Received: sampling={self.sampling!r}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                f"Tag group {self.name!r}: `probability` must be in [0, 1]. "
                f"Received: probability={self.probability}"
            )

    @property
    def size(self) -> int:
        return len(self.tags)


def _canonical(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").split())


class TagVocabulary:
    """An ordered vocabulary of tags made of groups.

    Tag names are canonical lower-case words separated by single spaces
    (`"blonde hair"`); lookups also accept underscores (`"blonde_hair"`, the
    column names of a labels CSV) and any case.

    Args:
        groups: the `TagGroup`s, in order. Their tags, concatenated, give the
            vocabulary order and the layout of a multi-hot vector.

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> len(PAPER_TAGS)
        34
        >>> v = PAPER_TAGS.parse("blonde hair, blue eyes, smile")
        >>> PAPER_TAGS.decode(v)
        ['blonde hair', 'blue eyes', 'smile']
    """

    def __init__(self, groups: Sequence[TagGroup]):
        self.groups = tuple(groups)
        if not self.groups:
            raise ValueError("A tag vocabulary needs at least one group. Received: groups=()")
        names = []
        self._slices = {}
        for group in self.groups:
            if group.name in self._slices:
                raise ValueError(f"Duplicate tag group name. Received: {group.name!r}")
            start = len(names)
            names.extend(_canonical(t) for t in group.tags)
            self._slices[group.name] = (start, len(names))
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Tag names must be unique. Received duplicates: {duplicates}")
        self.names = tuple(names)
        self._index = {n: i for i, n in enumerate(self.names)}

    # --- lookup -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: str) -> bool:
        return _canonical(name) in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, TagVocabulary) and self.groups == other.groups

    def __hash__(self) -> int:
        return hash(self.groups)

    def __repr__(self) -> str:
        return f"TagVocabulary({len(self)} tags in groups {[g.name for g in self.groups]})"

    def group(self, name: str) -> TagGroup:
        """The group called `name`; a `KeyError` lists the valid names."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(
            f"Unknown tag group {name!r}. Expected one of {[g.name for g in self.groups]}"
        )

    def group_slice(self, name: str) -> slice:
        """The columns of group `name` in a multi-hot vector."""
        self.group(name)
        return slice(*self._slices[name])

    def group_of(self, tag: str) -> TagGroup:
        """The group that holds `tag`."""
        i = self.index(tag)
        for group in self.groups:
            start, stop = self._slices[group.name]
            if start <= i < stop:
                return group
        raise AssertionError("unreachable")

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """The known tag names closest to `name` (for error messages)."""
        return difflib.get_close_matches(_canonical(name), self.names, n=n, cutoff=0.4)

    def index(self, name: str) -> int:
        """The column of tag `name`; an unknown name raises a `ValueError` with suggestions."""
        key = _canonical(name)
        if key not in self._index:
            close = self.suggest(key)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"Unknown tag {name!r}.{hint} Known tags: {', '.join(self.names)}")
        return self._index[key]

    # --- encoding -----------------------------------------------------------

    def encode(self, names: Iterable[str]) -> np.ndarray:
        """Multi-hot float32 vector of shape `(len(self),)` for the given tag names.

        Raises a `ValueError` for an unknown tag, or for two tags of one exclusive
        group (a face has one hair colour).
        """
        vector = np.zeros((len(self),), dtype="float32")
        seen = {}
        for name in names:
            i = self.index(name)
            group = self.group_of(name)
            if group.exclusive and group.name in seen and seen[group.name] != self.names[i]:
                raise ValueError(
                    f"Tags {seen[group.name]!r} and {self.names[i]!r} are both in the "
                    f"exclusive group {group.name!r}; expected at most one of them."
                )
            seen[group.name] = self.names[i]
            vector[i] = 1.0
        return vector

    def parse(self, text: str) -> np.ndarray:
        """Multi-hot vector from comma-separated text, e.g. `"blonde hair, blue eyes"`."""
        if not isinstance(text, str):
            raise TypeError(f"Expected a string of comma-separated tags. Received: {text!r}")
        names = [part for part in (p.strip() for p in text.split(",")) if part]
        return self.encode(names)

    def decode(self, vector, threshold: float = 0.5) -> list[str]:
        """The names of the tags whose value in `vector` is at least `threshold`."""
        vector = np.asarray(vector).reshape(-1)
        if vector.shape[0] != len(self):
            raise ValueError(
                f"Expected a vector of {len(self)} tag values. Received shape {vector.shape}"
            )
        return [name for name, value in zip(self.names, vector) if value >= threshold]

    def from_scores(self, scores, threshold: float | None = None) -> np.ndarray:
        """Tags from tagger scores with the group rules of the paper.

        In an exclusive group the most confident tag is kept when its score passes
        the group threshold; in other groups each tag is kept on its own. Works on
        a single vector or a batch `(n, len(self))`. `threshold`, when given,
        replaces every group's threshold.
        """
        scores = np.asarray(scores, dtype="float32")
        if scores.shape[-1] != len(self):
            raise ValueError(
                f"Expected scores with {len(self)} columns. Received shape {scores.shape}"
            )
        out = np.zeros_like(scores)
        for group in self.groups:
            sl = self.group_slice(group.name)
            block = scores[..., sl]
            limit = group.threshold if threshold is None else threshold
            if group.exclusive:
                best = np.argmax(block, axis=-1)
                keep = np.take_along_axis(block, best[..., None], axis=-1)[..., 0]
                onehot = np.eye(group.size, dtype="float32")[best]
                out[..., sl] = onehot * (keep >= limit)[..., None]
            else:
                out[..., sl] = (block >= limit).astype("float32")
        return out

    # --- sampling -----------------------------------------------------------

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Fake tags as the paper draws them, with numpy: `(n, len(self))` float32.

        Groups with `sampling="one"` get exactly one tag chosen uniformly; the
        others turn each tag on independently with the group's probability.
        """
        rng = np.random.default_rng(rng)
        out = np.zeros((n, len(self)), dtype="float32")
        for group in self.groups:
            sl = self.group_slice(group.name)
            if group.sampling == "one":
                pick = rng.integers(0, group.size, size=n)
                out[np.arange(n), sl.start + pick] = 1.0
            else:
                out[:, sl] = rng.random((n, group.size)) < group.probability
        return out

    def sample_ops(self, batch_size, seed):
        """The same draw as `sample` with `keras.ops`, for use inside a train step.

        Args:
            batch_size: number of rows.
            seed: a `keras.random.SeedGenerator` (or anything `keras.random` takes).
        """
        from keras import ops, random

        parts = []
        for group in self.groups:
            if group.sampling == "one":
                logits = ops.zeros((batch_size, group.size))
                pick = random.categorical(logits, 1, seed=seed)[:, 0]
                parts.append(ops.one_hot(pick, group.size, dtype="float32"))
            else:
                u = random.uniform((batch_size, group.size), seed=seed)
                parts.append(ops.cast(u < group.probability, "float32"))
        return ops.concatenate(parts, axis=-1)

    # --- config -------------------------------------------------------------

    def get_config(self) -> dict:
        return {"groups": [dataclasses.asdict(g) | {"tags": list(g.tags)} for g in self.groups]}

    @classmethod
    def from_config(cls, config: dict) -> TagVocabulary:
        if not isinstance(config, dict) or "groups" not in config:
            raise ValueError(
                "A tag vocabulary config must be a mapping with a `groups` list. "
                f"Received: {config!r}"
            )
        groups = []
        fields = {f.name for f in dataclasses.fields(TagGroup)}
        for i, g in enumerate(config["groups"]):
            unknown = set(g) - fields
            if unknown:
                raise ValueError(
                    f"Tag group {i}: unknown keys {sorted(unknown)}. Expected keys from "
                    f"{sorted(fields)}"
                )
            groups.append(TagGroup(**g))
        return cls(groups)


HAIR_COLORS = (
    "blonde hair", "brown hair", "black hair", "blue hair", "pink hair", "purple hair",
    "green hair", "red hair", "silver hair", "white hair", "orange hair", "aqua hair",
    "gray hair",
)  # fmt: skip
EYE_COLORS = (
    "blue eyes", "red eyes", "brown eyes", "green eyes", "purple eyes", "yellow eyes",
    "pink eyes", "aqua eyes", "black eyes", "orange eyes",
)  # fmt: skip
HAIR_STYLES = ("long hair", "short hair", "twintails", "drill hair", "ponytail")
OTHER_TAGS = ("blush", "smile", "open mouth", "hat", "ribbon", "glasses")

PAPER_TAGS = TagVocabulary(
    [
        TagGroup("hair_color", HAIR_COLORS, exclusive=True, sampling="one"),
        TagGroup("eye_color", EYE_COLORS, exclusive=True, sampling="one"),
        TagGroup("hair_style", HAIR_STYLES, exclusive=True, sampling="independent"),
        TagGroup("other", OTHER_TAGS, exclusive=False, sampling="independent"),
    ]
)
"""The 34 tags of Jin et al. (2017), in the paper's order."""
