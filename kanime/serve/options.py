"""The page's tag options: fixed, off or random per tag, resolved per seed.

Each exclusive group of the vocabulary (hair colour, hair style, eye colour) is a selector
whose value is one of its tags, `"random"` (one of its tags, drawn uniformly) or `"none"`
(no tag of the group). Each tag of a non-exclusive group (blush, smile, ...) is a toggle:
`"on"`, `"off"` or `"random"` (on with probability 1/2). A missing entry means `"none"` or
`"off"`.

The random choices of an image are drawn from its seed, with every draw made whether it is
used or not: the same seed and options always give the same tags, and fixing one option
does not change what the others draw.
"""

from __future__ import annotations

import numpy as np

from kanime.tags import TagVocabulary

RANDOM, NONE, ON, OFF = "random", "none", "on", "off"
TOGGLE_VALUES = (ON, OFF, RANDOM)

# Second entropy word of the tag draws, so they are not the draws that make the noise.
_TAG_STREAM = 0x7A67


class TagOptions:
    """What the page asks of each tag, checked against a vocabulary.

    Args:
        vocabulary: the generator's `TagVocabulary`.
        choices: `{group name: tag | "random" | "none"}` for exclusive groups and
            `{tag name: "on" | "off" | "random"}` for the tags of the other groups. Tag names
            may use any case or underscores. Anything else raises a `ValueError` that names
            the key and the values it accepts.

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> options = TagOptions(PAPER_TAGS, {"hair_color": "blonde hair", "eye_color": "random",
        ...                                    "smile": "on", "hat": "random"})
        >>> tags = PAPER_TAGS.decode(options.resolve(seed=7))
        >>> tags[0], "smile" in tags
        ('blonde hair', True)
        >>> PAPER_TAGS.decode(options.resolve(seed=7)) == tags
        True
        >>> TagOptions(PAPER_TAGS, {"hair_color": "blue eyes"})
        Traceback (most recent call last):
        ...
        ValueError: options['hair_color']: 'blue eyes' is not a tag of the group. Expected \
'random', 'none' or one of: blonde hair, brown hair, black hair, blue hair, pink hair, purple \
hair, green hair, red hair, silver hair, white hair, orange hair, aqua hair, gray hair
    """

    def __init__(self, vocabulary: TagVocabulary, choices: dict | None = None):
        self.vocabulary = vocabulary
        self._selectors = [g for g in vocabulary.groups if g.exclusive]
        self._toggles = [
            vocabulary.names[i]
            for g in vocabulary.groups
            if not g.exclusive
            for i in range(*_span(vocabulary, g))
        ]
        self.choices = {g.name: NONE for g in self._selectors} | {t: OFF for t in self._toggles}
        if choices is None:
            return
        if not isinstance(choices, dict):
            raise ValueError(
                f"`options` must be an object of tag choices. Received: {_short(choices)}"
            )
        for key, value in choices.items():
            self._set(key, value)

    @classmethod
    def from_tags(cls, vocabulary: TagVocabulary, names) -> TagOptions:
        """Options that ask for exactly the tags `names` (a list, or comma-separated text).

        Examples:
            >>> from kanime.tags import PAPER_TAGS
            >>> options = TagOptions.from_tags(PAPER_TAGS, "Blonde_Hair, smile")
            >>> options.choices["hair_color"], options.choices["smile"], options.choices["hat"]
            ('blonde hair', 'on', 'off')
        """
        if isinstance(names, str):
            names = [part.strip() for part in names.split(",") if part.strip()]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(
                "`tags` must be a list of tag names or comma-separated text. "
                f"Received: {_short(names)}"
            )
        vector = vocabulary.encode(names)  # unknown tags and exclusive clashes raise here
        return cls.from_vector(vocabulary, vector)

    @classmethod
    def from_vector(cls, vocabulary: TagVocabulary, vector) -> TagOptions:
        """Options that ask for exactly the tags of a multi-hot `vector`."""
        options = cls(vocabulary)
        for name in vocabulary.decode(vector):
            group = vocabulary.group_of(name)
            options.choices[group.name if group.exclusive else name] = (
                name if group.exclusive else ON
            )
        return options

    def _set(self, key, value):
        if not isinstance(key, str):
            raise ValueError(f"Option keys must be strings. Received: {key!r}")
        canonical = " ".join(key.strip().lower().replace("_", " ").split())
        group = next(
            (g for g in self._selectors if g.name in (key, canonical.replace(" ", "_"))), None
        )
        if group is not None:
            tags = [self.vocabulary.names[i] for i in range(*_span(self.vocabulary, group))]
            pick = value.strip().lower().replace("_", " ") if isinstance(value, str) else None
            pick = " ".join(pick.split()) if pick is not None else None
            if pick not in (RANDOM, NONE, *tags):
                raise ValueError(
                    f"options[{key!r}]: {_short(value)} is not a tag of the group. Expected "
                    f"'random', 'none' or one of: {', '.join(tags)}"
                )
            self.choices[group.name] = pick
            return
        if canonical in self._toggles:
            if value not in TOGGLE_VALUES:
                raise ValueError(
                    f"options[{key!r}] must be 'on', 'off' or 'random'. Received: {_short(value)}"
                )
            self.choices[canonical] = value
            return
        keys = [g.name for g in self._selectors] + list(self._toggles)
        hint = ""
        if canonical in self.vocabulary:
            group = self.vocabulary.group_of(canonical)
            hint = f" {canonical!r} is chosen with the key {group.name!r}."
        raise ValueError(f"Unknown option {key!r}.{hint} Expected keys: {', '.join(keys)}")

    def resolve(self, seed: int) -> np.ndarray:
        """The multi-hot tag vector `(T,)` float32 these options give for `seed`."""
        rng = np.random.default_rng([int(seed), _TAG_STREAM])
        picks = rng.integers(0, [g.size for g in self._selectors]) if self._selectors else []
        coins = rng.random(len(self._toggles))
        vector = np.zeros(len(self.vocabulary), "float32")
        for group, pick in zip(self._selectors, picks):
            start, _ = _span(self.vocabulary, group)
            choice = self.choices[group.name]
            if choice == RANDOM:
                vector[start + int(pick)] = 1.0
            elif choice != NONE:
                vector[self.vocabulary.index(choice)] = 1.0
        for tag, coin in zip(self._toggles, coins):
            choice = self.choices[tag]
            if choice == ON or (choice == RANDOM and coin < 0.5):
                vector[self.vocabulary.index(tag)] = 1.0
        return vector

    def to_dict(self) -> dict:
        """The choices as the JSON object the API and the page's export use."""
        return dict(self.choices)


def controls(vocabulary: TagVocabulary) -> list[dict]:
    """The page's controls for `vocabulary`: a selector per exclusive group, toggles else.

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> [(c["kind"], c["key"]) for c in controls(PAPER_TAGS)][:4]
        [('selector', 'hair_color'), ('selector', 'eye_color'), ('selector', 'hair_style'), \
('toggle', 'blush')]
    """
    out = []
    for group in vocabulary.groups:
        tags = [vocabulary.names[i] for i in range(*_span(vocabulary, group))]
        if group.exclusive:
            out.append({"kind": "selector", "key": group.name, "group": group.name, "tags": tags})
        else:
            out.extend({"kind": "toggle", "key": t, "group": group.name} for t in tags)
    return out


def _span(vocabulary: TagVocabulary, group) -> tuple[int, int]:
    s = vocabulary.group_slice(group.name)
    return s.start, s.stop


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["NONE", "OFF", "ON", "RANDOM", "TagOptions", "controls"]
