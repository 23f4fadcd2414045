"""`load_faces`: N faces of a dataset, chosen with a seeded generator, with their ids and tags.

What t-SNE pictures, FID's real statistics and the evaluation's real-face ceiling read: a
sample of faces decoded at one size, from `kanime prepare` shards or procedural faces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from rich.progress import track

from kanime.data.pipeline import decode_face
from kanime.data.procedural import make_faces
from kanime.data.tfrecords import count_records, decode_example, iter_records, list_shards
from kanime.tags import PAPER_TAGS


def _tag_names(data) -> tuple[str, ...]:
    """The tag names of a prepared dataset (its `prepare.json`), else the paper's 34."""
    settings = Path(data) / "prepare.json"
    if settings.is_file():
        names = json.loads(settings.read_text(encoding="utf-8")).get("tags")
        if names:
            return tuple(names)
    return PAPER_TAGS.names


def load_faces(data, n: int, image_size: int, seed: int = 0, progress: bool = False):
    """`n` faces of a dataset chosen with a seeded generator, with their ids and tags.

    Args:
        data: a `kanime prepare` output (a folder of TFRecord shards, a shard
            pattern or file), or `"procedural"` for procedural faces with their
            true tags (`kanime.data.procedural.make_faces`, set `seed`).
        n: number of faces; a dataset with fewer faces gives all of them.
        image_size: side of the returned images in pixels.
        seed: chooses the faces (and draws the procedural ones).
        progress: show a progress bar.

    Returns:
        `(images, tags, ids, tag_names)`: uint8 RGB images `(m, s, s, 3)`,
        float32 tags `(m, T)`, the faces' ids (str array) and the `T` tag names;
        `m = min(n, faces in data)`, in shard order.

    Raises:
        FileNotFoundError: no shards at `data`.
        ValueError: `n < 1`, or a corrupt shard.
    """
    n, image_size = int(n), int(image_size)
    if n < 1:
        raise ValueError(f"`n` must be positive. Received: n={n}")
    if image_size < 1:
        raise ValueError(f"`image_size` must be positive. Received: image_size={image_size}")
    if str(data) == "procedural":
        images, tags = make_faces(n, image_size, seed=seed, progress=progress)
        ids = np.array([f"procedural-{seed}-{i}" for i in range(n)])
        return images, tags, ids, PAPER_TAGS.names

    files = list_shards(data)
    total = count_records(files)
    if total == 0:
        raise ValueError(f"The shards at {str(data)!r} hold no faces.")
    chosen = np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)
    wanted = np.zeros(total, dtype=bool)
    wanted[chosen] = True
    m = len(chosen)
    images = np.empty((m, image_size, image_size, 3), dtype=np.uint8)
    tags, ids = [], []

    def records():
        index = 0
        for path in files:
            for record in iter_records(path):
                if wanted[index]:
                    yield path, record
                index += 1

    stream = records()
    if progress:
        stream = track(stream, total=m, description=f"Loading {m} of {total} faces")
    for k, (path, record) in enumerate(stream):
        face = decode_example(record)
        images[k] = decode_face(face["image"], image_size, f"{path}: face {face['id']!r}")
        tags.append(face["tags"])
        ids.append(face["id"])
    widths = {len(t) for t in tags}
    if len(widths) != 1:
        raise ValueError(f"The faces at {str(data)!r} have tag vectors of lengths {widths}.")
    names = _tag_names(data) if os.path.isdir(data) else PAPER_TAGS.names
    if len(names) != widths.pop():
        names = tuple(f"tag {i}" for i in range(len(tags[0])))
    return images, np.stack(tags).astype(np.float32), np.array(ids), names


__all__ = ["load_faces"]
