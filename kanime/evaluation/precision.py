"""Per-tag precision, the paper's table: ask for a tag, see whether the tagger finds it.

For each tag `t` of the vocabulary, `tag_precision` generates faces whose tags
ask for `t`, runs a tagger on them and counts how often `t` is found:
`precision(t) = found / asked`. The other tags of each face are drawn the way
the faces of the data have them (`prior`, rows of real tags) or, without a
prior, the way `TagVocabulary.sample` draws fake tags; `t` is then switched on
and, when its group is exclusive (hair colour, eye colour, hair style), the
other tags of its group off. An exclusive group that a drawn row has several
tags of keeps one of them, chosen at random, so every face asks for something a
face can be.

`real_precision` is the ceiling: the same figure for real faces that carry the
tag, i.e. how often the tagger finds a tag that is there. A generator cannot be
expected to beat the tagger it is judged by.

A tagger is anything with `tags(images) -> (n, T)` 0/1 tags in the vocabulary's
order (`kanime.tagger.apply.Tagger`, or a test's oracle).

Examples:
    >>> import numpy as np
    >>> from kanime.tags import PAPER_TAGS
    >>> rows = prompts(PAPER_TAGS, "red hair", 4, np.random.default_rng(0))
    >>> [PAPER_TAGS.decode(r)[0] for r in rows]
    ['red hair', 'red hair', 'red hair', 'red hair']
    >>> int(rows[:, PAPER_TAGS.group_slice("hair_color")].sum())
    4
"""

from __future__ import annotations

import numpy as np


def prompts(vocabulary, tag: str, n: int, rng, prior=None) -> np.ndarray:
    """`n` tag vectors that ask for `tag`, the other tags drawn from `prior`.

    Args:
        vocabulary: the `TagVocabulary`.
        tag: the tag asked for.
        n: number of rows.
        rng: a `np.random.Generator`.
        prior: rows of real tags `(m, T)` to draw the other tags from (with
            replacement); None draws them with `vocabulary.sample`.

    Returns:
        float32 `(n, T)` multi-hot rows.
    """
    column = vocabulary.index(tag)
    if prior is None:
        rows = vocabulary.sample(n, rng)
    else:
        prior = np.asarray(prior, dtype=np.float32)
        if prior.ndim != 2 or prior.shape[1] != len(vocabulary) or len(prior) == 0:
            raise ValueError(
                f"Expected prior tag rows of shape (m >= 1, {len(vocabulary)}). "
                f"Received shape {prior.shape}"
            )
        rows = (prior[rng.integers(0, len(prior), size=n)] >= 0.5).astype(np.float32)
    for group in vocabulary.groups:
        if not group.exclusive:
            continue
        block = rows[:, vocabulary.group_slice(group.name)]  # a view: edits land in rows
        for i in np.flatnonzero(block.sum(axis=1) > 1):
            keep = rng.choice(np.flatnonzero(block[i]))
            block[i] = 0.0
            block[i, keep] = 1.0
    group = vocabulary.group_of(tag)
    if group.exclusive:
        rows[:, vocabulary.group_slice(group.name)] = 0.0
    rows[:, column] = 1.0
    return rows


def _check_tagger(tagger, vocabulary) -> None:
    if not callable(getattr(tagger, "tags", None)):
        raise TypeError(
            f"A tagger must have a tags(images) method (e.g. kanime.tagger.apply.Tagger). "
            f"Received: {type(tagger).__name__}"
        )
    theirs = getattr(tagger, "vocabulary", None)
    if theirs is not None and tuple(theirs.names) != tuple(vocabulary.names):
        raise ValueError(
            f"The tagger scores {len(theirs)} tags ({', '.join(theirs.names[:3])}, ...) and "
            f"the generator takes {len(vocabulary)} ({', '.join(vocabulary.names[:3])}, ...): "
            "they must be the same tags in the same order."
        )


def _found(tagger, images, column: int, n_tags: int) -> np.ndarray:
    tags = np.asarray(tagger.tags(images))
    if tags.shape != (len(images), n_tags):
        raise ValueError(
            f"The tagger gave tags of shape {tags.shape} for {len(images)} images; expected "
            f"({len(images)}, {n_tags})."
        )
    return tags[:, column] >= 0.5


def tag_precision(
    generator, tagger, per_tag: int = 256, seed: int = 0, prior=None,
    first_seed: int = 0, batch_size: int = 64, progress=None,
) -> dict:  # fmt: skip
    """Per-tag precision of a generator: for each tag, the share of faces asking for it
    in which the tagger finds it.

    Args:
        generator: a `kanime.inference.CharacterGenerator`, or any object with
            `vocabulary`, `noise(seeds)` and `__call__(z, tags, batch_size)` giving
            uint8 images.
        tagger: an object with `tags(images)` (see the module docstring).
        per_tag: faces generated for each tag.
        seed: draws the other tags of the faces.
        prior: real tag rows to draw the other tags from (see `prompts`).
        first_seed: the noise seed of the first face; tag `k`'s faces use the
            seeds `first_seed + k * per_tag + [0, per_tag)`.
        batch_size: faces per generator call.
        progress: a callable given the number of faces done after each tag.

    Returns:
        `{tag: {"asked": per_tag, "found": int, "precision": float}}` in vocabulary order.
    """
    per_tag = int(per_tag)
    if per_tag < 1:
        raise ValueError(f"per_tag must be at least 1. Received: per_tag={per_tag}")
    vocabulary = generator.vocabulary
    _check_tagger(tagger, vocabulary)
    rng = np.random.default_rng(seed)
    rows = {}
    for k, name in enumerate(vocabulary.names):
        seeds = first_seed + k * per_tag + np.arange(per_tag)
        tags = prompts(vocabulary, name, per_tag, rng, prior)
        images = generator(generator.noise(seeds), tags, batch_size=batch_size)
        found = int(_found(tagger, images, k, len(vocabulary)).sum())
        rows[name] = {"asked": per_tag, "found": found, "precision": found / per_tag}
        if progress is not None:
            progress(per_tag)
    return rows


def real_precision(images, tags, tagger, vocabulary) -> dict:
    """The ceiling: for each tag, the share of real faces carrying it in which the
    tagger finds it.

    Args:
        images: uint8 real faces `(n, h, w, 3)`.
        tags: their true tags `(n, T)`.
        tagger: an object with `tags(images)`.
        vocabulary: the `TagVocabulary` of `tags`.

    Returns:
        `{tag: {"support": int, "found": int, "precision": float or None}}`;
        `precision` is None for a tag no face carries.

    Examples:
        >>> from kanime.tags import PAPER_TAGS
        >>> class Oracle:
        ...     def tags(self, images):
        ...         return truth[: len(images)]
        >>> truth = PAPER_TAGS.sample(6, 0)
        >>> rows = real_precision(np.zeros((6, 8, 8, 3), np.uint8), truth, Oracle(), PAPER_TAGS)
        >>> {r["precision"] for r in rows.values() if r["support"]}
        {1.0}
    """
    _check_tagger(tagger, vocabulary)
    truth = np.asarray(tags) >= 0.5
    if truth.shape != (len(images), len(vocabulary)):
        raise ValueError(
            f"Expected tags of shape ({len(images)}, {len(vocabulary)}). Received {truth.shape}"
        )
    predicted = np.asarray(tagger.tags(images)) >= 0.5
    rows = {}
    for k, name in enumerate(vocabulary.names):
        support = int(truth[:, k].sum())
        found = int((truth[:, k] & predicted[:, k]).sum())
        rows[name] = {
            "support": support,
            "found": found,
            "precision": found / support if support else None,
        }
    return rows


__all__ = ["prompts", "real_precision", "tag_precision"]
