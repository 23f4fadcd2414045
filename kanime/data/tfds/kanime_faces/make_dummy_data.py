"""Writes the synthetic `dummy_data/` of `kanime_faces` from generated noise (no real faces).

The dummy data is in manual layout (a), a `kanime prepare` output: 5 noise faces in two
shards (`faces-00000.tfrecord` with 3, `faces-00001.tfrecord` with 2) and `manifest.jsonl`.
Sizes 128 and 96 exercise both "keep" and "resize" at each config's resolution; the last
face is untagged. Run it from anywhere:

    python kanime/data/tfds/kanime_faces/make_dummy_data.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from kanime.data.tfrecords import ShardWriter, encode_example
from kanime.tags import PAPER_TAGS

DUMMY_DATA = Path(__file__).resolve().parent / "dummy_data"
NUM_FACES = 5
SIZES = (128, 96, 128, 96, 64)


def noise_jpeg(rng: np.random.Generator, size: int) -> bytes:
    """A JPEG of smooth random noise (upsampled low-resolution noise), `size` x `size`."""
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def main(out: Path = DUMMY_DATA, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows = []
    with ShardWriter(out, shard_size=3) as writer:
        for i in range(NUM_FACES):
            tagged = int(i < NUM_FACES - 1)
            tags = PAPER_TAGS.sample(1, rng)[0] if tagged else np.zeros(len(PAPER_TAGS))
            face_id = f"noise{i:02d}-0"
            source = f"noise/{i:02d}.png"
            size = SIZES[i]
            writer.write(
                encode_example(face_id, noise_jpeg(rng, size), tags, tagged, source, year=2017)
            )
            rows.append(
                {"id": face_id, "source": source, "box": [0, 0, size, size], "tagged": tagged}
            )
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    rows = main()
    print(f"Wrote {len(rows)} noise faces to {DUMMY_DATA}")
