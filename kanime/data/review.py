"""`kanime review`: the fast manual cleaning pass over prepared faces.

The paper removed about 4% false positives (non-faces, bad crops) by hand.
`contact_sheets` draws every face of a prepared folder as a thumbnail with its
id under it; one looks through the sheets, lists the ids of the bad crops in a
text file, and `apply_rejects` removes them: each affected shard is rewritten
without them (atomically, shard by shard), their manifest rows move to
`rejected.jsonl` with the reason "rejected in review", and `stats.json` and
`labels.png` are recomputed. Nothing is detected again.

Both read the shards with `kanime.data.tfrecords.iter_records` and
`decode_example`, and write them with its `ShardWriter`: no TensorFlow.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from kanime.atomic import atomic_path
from kanime.data.prepare import (
    MANIFEST,
    REJECTED,
    SETTINGS,
    SHARD_PREFIX,
    append_jsonl,
    read_jsonl,
    shard_files,
    write_jsonl,
    write_stats,
)
from kanime.data.tfrecords import ShardWriter, decode_example, iter_records
from kanime.tags import PAPER_TAGS, TagGroup, TagVocabulary

REVIEW_REASON = "rejected in review"
SHEETS = "review"
THUMB = 128


def _vocabulary(out) -> TagVocabulary:
    path = Path(out) / SETTINGS
    if path.exists():
        names = json.loads(path.read_text(encoding="utf-8")).get("tags")
        if names and tuple(names) != PAPER_TAGS.names:
            return TagVocabulary([TagGroup("tags", tuple(names))])
    return PAPER_TAGS


def contact_sheets(out, per_sheet: int = 100, cols: int = 10) -> list[Path]:
    """Draws the faces in `out`'s shards on PNG contact sheets, each with its id under it.

    Sheets go to `out/review/sheet-NNNN.png` (older sheets there are replaced),
    faces in shard order. Thumbnails are at most 128 pixels wide.

    Returns:
        The sheet paths, in order.
    """
    from PIL import Image, ImageDraw, ImageFont


    if per_sheet < 1 or cols < 1:
        raise ValueError(f"per_sheet and cols must be positive. Received: {per_sheet}, {cols}")
    out = Path(out)
    folder = out / SHEETS
    folder.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default()
    paths, batch = [], []

    def draw(batch):
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        text_w = max(probe.textbbox((0, 0), face_id, font=font)[2] for face_id, _ in batch)
        text_h = max(probe.textbbox((0, 0), face_id, font=font)[3] for face_id, _ in batch)
        thumb = max(image.width for _, image in batch)
        cell_w, cell_h = max(thumb, text_w) + 8, thumb + text_h + 10
        rows = (len(batch) + cols - 1) // cols
        sheet = Image.new("RGB", (cell_w * min(cols, len(batch)), cell_h * rows), "white")
        pen = ImageDraw.Draw(sheet)
        for n, (face_id, image) in enumerate(batch):
            x, y = (n % cols) * cell_w, (n // cols) * cell_h
            sheet.paste(image, (x + (cell_w - image.width) // 2, y + 4))
            width = pen.textbbox((0, 0), face_id, font=font)[2]
            pen.text((x + (cell_w - width) // 2, y + thumb + 6), face_id, fill="black", font=font)
        path = folder / f"sheet-{len(paths) + 1:04d}.png"
        with atomic_path(path, suffix=".png") as tmp:
            sheet.save(tmp, format="PNG")
        paths.append(path)

    for shard in shard_files(out).values():
        for record in iter_records(shard):
            example = decode_example(record)
            image = Image.open(io.BytesIO(example["image"])).convert("RGB")
            if image.width > THUMB:
                image = image.resize((THUMB, THUMB * image.height // image.width), Image.LANCZOS)
            batch.append((str(example["id"]), image))
            if len(batch) == per_sheet:
                draw(batch)
                batch = []
    if batch:
        draw(batch)
    for stale in folder.glob("sheet-*.png"):
        if stale not in paths:
            stale.unlink()
    return paths


def read_ids(path) -> list[str]:
    """Face ids from a text file: separated by white space or commas; `#` starts a comment."""
    ids = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0]
        ids.extend(part for part in re.split(r"[\s,]+", line) if part)
    return list(dict.fromkeys(ids))


def apply_rejects(out, ids_file) -> dict:
    """Removes the faces listed in `ids_file` from the prepared folder `out`.

    Each shard holding one of them is rewritten without it (atomically; a shard
    left empty is deleted), then its manifest rows move to `rejected.jsonl`
    with the reason "rejected in review". Shard by shard, so a run killed
    midway can simply be repeated. Ids removed by an earlier call are ignored;
    an id that is in neither file is an error (nothing is changed).

    Returns:
        `{"removed", "already_removed", "shards_rewritten", "shards_deleted", "faces"}`.
    """

    out = Path(out)
    ids = read_ids(ids_file)
    manifest = read_jsonl(out / MANIFEST)
    rejected = read_jsonl(out / REJECTED)
    known = {row["id"] for row in manifest}
    already = {row["id"] for row in rejected if row.get("reason") == REVIEW_REASON and "id" in row}
    unknown = [i for i in ids if i not in known and i not in already]
    if unknown:
        shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"{ids_file}: {len(unknown)} id(s) are not faces in {out / MANIFEST}: {shown}"
        )
    targets = {i for i in ids if i in known}
    shards = sorted({row["shard"] for row in manifest if row["id"] in targets})
    files = {path.name: (index, path) for index, path in shard_files(out).items()}
    rewritten, deleted = 0, 0
    for name in shards:
        if name in files:
            index, path = files[name]
            records = list(iter_records(path))
            keep = [r for r in records if str(decode_example(r)["id"]) not in targets]
            if not keep:
                path.unlink()
                deleted += 1
            elif len(keep) < len(records):
                with ShardWriter(
                    out, SHARD_PREFIX, shard_size=len(keep), start_index=index, overwrite=True
                ) as writer:
                    for record in keep:
                        writer.write(record)
                rewritten += 1
        moved = [row for row in manifest if row["shard"] == name and row["id"] in targets]
        manifest = [row for row in manifest if not (row["shard"] == name and row["id"] in targets)]
        write_jsonl(out / MANIFEST, manifest)
        append_jsonl(
            out / REJECTED,
            [
                {"source": row["source"], "id": row["id"], "reason": REVIEW_REASON, "shard": name}
                for row in moved
            ],
            sync=True,
        )
    write_stats(out, _vocabulary(out))
    return {
        "removed": len(targets),
        "already_removed": len([i for i in ids if i in already and i not in known]),
        "shards_rewritten": rewritten,
        "shards_deleted": deleted,
        "faces": len(manifest),
    }
