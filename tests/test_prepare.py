import csv
import io
import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from kanime.data import prepare as prepare_module
from kanime.data import tfrecords
from kanime.data.prepare import face_id, prepare, read_jsonl, read_labels
from kanime.data.review import apply_rejects, contact_sheets
from kanime.tags import PAPER_TAGS

CASCADE = SHARED_DATA / "lbpcascade_animeface.xml"
ILLUSTRATIONS = SHARED_DATA / "illustrations"
GETCHU = SHARED_DATA / "getchu-faces-128"
needs_illustrations = pytest.mark.skipif(
    not ILLUSTRATIONS.exists() or not CASCADE.exists(),
    reason=f"the shared illustrations or face cascade are not under {SHARED_DATA}",
)
needs_getchu = pytest.mark.skipif(
    not (GETCHU / "labels.csv").exists(), reason=f"the shared face crops are not at {GETCHU}"
)
COLUMNS = [name.replace(" ", "_") for name in PAPER_TAGS.names]


def _records(out):
    """`{id: decoded record}` of every shard in `out`; fails on a repeated id."""
    found = {}
    for path in sorted(out.glob("faces-*.tfrecord")):
        for record in tfrecords.iter_records(path):
            face = tfrecords.decode_example(record)
            assert face["id"] not in found, f"{face['id']} is in two records"
            found[face["id"]] = face | {"shard": path.name}
    return found


def _check_consistent(out, sources, size):
    """Every input accounted for exactly once; manifest and shards agree."""
    manifest, rejected = read_jsonl(out / "manifest.jsonl"), read_jsonl(out / "rejected.jsonl")
    ids = [row["id"] for row in manifest]
    assert len(ids) == len(set(ids))
    input_rows = [row["source"] for row in rejected if "id" not in row]
    assert len(input_rows) == len(set(input_rows))
    with_faces = {row["source"] for row in manifest}
    assert not with_faces & set(input_rows)
    assert with_faces | set(input_rows) | {r["source"] for r in rejected} == set(sources)
    records = _records(out)
    assert set(records) == set(ids)
    for row in manifest:
        face = records[row["id"]]
        assert face["shard"] == row["shard"] and face["source"] == row["source"]
        assert list(face["box"]) == row["box"]
        assert PAPER_TAGS.decode(face["tags"]) == row["tags"]
        image = Image.open(io.BytesIO(face["image"]))
        assert image.size == (size, size) and image.format == "JPEG"
    return manifest, rejected


def _write_labels(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", *COLUMNS])
        for name, tags in rows.items():
            vector = PAPER_TAGS.parse(tags)
            writer.writerow([name, *[int(v) for v in vector]])


def _noise_images(folder, names, size=48):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.NEAREST)
        image.save(folder / name)


def _write_bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not pixels at all\n" * 10)
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    noise = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "full.jpg")
    data = (folder / "full.jpg").read_bytes()
    (folder / "full.jpg").unlink()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])

    def chunk(kind, payload):
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    (folder / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    )
    return {
        "bad/empty.jpg": "empty file",
        "bad/notes.png": "not an image",
        "bad/dot.png": "too small (1x1)",
        "bad/cut.jpg": "truncated",
        "bad/bomb.png": "decompression bomb (10000000000 pixels)",
    }


# --- labels ---------------------------------------------------------------------------


def test_read_labels_and_header_errors(tmp_path):
    _write_labels(tmp_path / "ok.csv", {"a.png": "blonde hair, blue eyes, smile", "sub/b.jpg": ""})
    table = read_labels(tmp_path / "ok.csv")
    assert set(table) == {"a.png", "b.jpg"}  # matched by base name
    assert PAPER_TAGS.decode(table["a.png"]) == ["blonde hair", "blue eyes", "smile"]

    text = (tmp_path / "ok.csv").read_text()
    (tmp_path / "unknown.csv").write_text(text.replace("blonde_hair", "blond_hair", 1))
    with pytest.raises(ValueError, match="unknown.csv: unknown column 'blond_hair'.*blonde_hair"):
        read_labels(tmp_path / "unknown.csv")
    (tmp_path / "missing.csv").write_text(text.replace(",glasses", "", 1))
    with pytest.raises(ValueError, match="missing tag column.*glasses"):
        read_labels(tmp_path / "missing.csv")
    (tmp_path / "value.csv").write_text(text.replace("a.png,1", "a.png,2", 1))
    with pytest.raises(ValueError, match="value.csv, line 2, column 'blonde_hair'.*'2'"):
        read_labels(tmp_path / "value.csv")


# --- prepare, whole-image faces (no cascade needed) ---------------------------------------


def test_faces_mode_labels_years_and_untagged(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _noise_images(src, ["a.png", "b.png", "c.png", "d.png", "e.png"])
    Image.new("RGB", (60, 40), "white").save(src / "wide.png")
    _write_labels(tmp_path / "labels.csv", {"b.png": "pink hair, red eyes", "e.png": "hat"})
    (tmp_path / "meta.csv").write_text(
        "filename,year\na.png,2004\nb.png,2010\nd.png,2005\ne.png,2006\nwide.png,2007\n"
    )
    stats = prepare(
        src,
        out,
        faces=True,
        size=32,
        labels=tmp_path / "labels.csv",
        metadata=tmp_path / "meta.csv",
        min_year=2005,
        allow_untagged=False,
        workers=0,
        progress=False,
    )
    manifest, rejected = _check_consistent(
        out, ["a.png", "b.png", "c.png", "d.png", "e.png", "wide.png"], 32
    )
    assert {r["source"]: r["reason"] for r in rejected} == {
        "a.png": "before 2005",
        "c.png": "no year",
        "d.png": "untagged",
        "wide.png": "untagged",
    }
    rows = {row["source"]: row for row in manifest}
    assert rows["b.png"]["tags"] == ["pink hair", "red eyes"] and rows["b.png"]["year"] == 2010
    assert rows["e.png"]["tags"] == ["hat"] and rows["e.png"]["tagged"] is True
    assert rows["b.png"]["id"] == face_id("b.png", 0)
    assert rows["b.png"]["box"] == [0, 0, 48, 48]
    assert stats["faces"] == 2 and stats["inputs"] == 6 and stats["untagged"] == 0
    assert stats["rejected"] == {"untagged": 2, "before 2005": 1, "no year": 1}
    assert stats["tags"]["pink hair"] == 1 and stats["tags"]["hat"] == 1
    assert json.loads((out / "stats.json").read_text()) == stats
    assert (out / "labels.png").read_bytes().startswith(b"\x89PNG")
    records = _records(out)
    assert records[rows["b.png"]["id"]]["year"] == 2010
    assert records[rows["b.png"]["id"]]["tagged"] == 1
    assert not (out / "faces").exists()


def test_faces_mode_centre_crop_and_untagged_allowed(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    image = np.zeros((40, 100, 3), np.uint8)
    image[:, 30:70] = (250, 10, 10)  # the centred square is red, the rest black
    Image.fromarray(image).save(src / "wide.png")
    stats = prepare(src, out, faces=True, size=40, workers=0, progress=False)
    assert stats["faces"] == 1 and stats["untagged"] == 1
    (row,) = read_jsonl(out / "manifest.jsonl")
    assert row["box"] == [30, 0, 40, 40] and row["tagged"] is False and row["tags"] == []
    (face,) = _records(out).values()
    pixels = np.asarray(Image.open(io.BytesIO(face["image"])))
    assert pixels[..., 0].min() > 200 and face["tagged"] == 0 and face["year"] == -1


def test_options_are_checked(tmp_path):
    src = tmp_path / "src"
    _noise_images(src, ["a.png"])
    with pytest.raises(ValueError, match="min_year needs a metadata"):
        prepare(src, tmp_path / "o1", faces=True, min_year=2005, progress=False)
    with pytest.raises(ValueError, match="allow_untagged=False needs a labels"):
        prepare(src, tmp_path / "o1", faces=True, allow_untagged=False, progress=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare(tmp_path / "nowhere", tmp_path / "o1", faces=True, progress=False)
    prepare(src, tmp_path / "o2", faces=True, size=32, workers=0, progress=False)
    with pytest.raises(ValueError, match="other options.*size: 32 before, 64 now"):
        prepare(src, tmp_path / "o2", faces=True, size=64, workers=0, progress=False)


def test_near_duplicates_are_rejected(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _noise_images(src, ["a.png", "b.png"])
    shutil.copy(src / "a.png", src / "c.png")
    small = Image.open(src / "a.png").resize((40, 40))  # a resized copy
    small.save(src / "d.jpg", quality=90)
    prepare(src, out, faces=True, size=32, workers=0, progress=False)
    manifest, rejected = _check_consistent(out, ["a.png", "b.png", "c.png", "d.jpg"], 32)
    assert [row["source"] for row in manifest] == ["a.png", "b.png"]
    assert {r["source"]: (r["reason"], r["duplicate_of"]) for r in rejected} == {
        "c.png": ("near duplicate", face_id("a.png", 0)),
        "d.jpg": ("near duplicate", face_id("a.png", 0)),
    }


def test_resume_after_a_crash_in_the_writer(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    names = [f"n{i}.png" for i in range(9)]  # after bad/ in input order
    _noise_images(src, names)
    bad = _write_bad_files(src / "bad")
    sources = names + list(bad)

    class CrashingWriter(tfrecords.ShardWriter):
        made = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            CrashingWriter.made += 1

        def write(self, serialized):
            if CrashingWriter.made == 3:
                raise RuntimeError("simulated crash while writing the third shard")
            super().write(serialized)

    monkeypatch.setattr(prepare_module, "ShardWriter", CrashingWriter)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare(src, out, faces=True, size=32, shard_size=2, workers=0, progress=False)
    assert sorted(p.name for p in out.glob("faces-*")) == [
        "faces-00000.tfrecord",
        "faces-00001.tfrecord",
    ]
    assert not list(out.glob(".*tmp"))
    assert len(read_jsonl(out / "manifest.jsonl")) == 4
    monkeypatch.undo()

    stats = prepare(src, out, faces=True, size=32, shard_size=2, workers=0, progress=False)
    manifest, rejected = _check_consistent(out, sources, 32)
    assert stats["run"]["skipped"] == 4 + len(bad)  # the committed faces and the bad files
    assert len(manifest) == 9 and stats["faces"] == 9
    assert {r["source"]: r["reason"] for r in rejected} == bad
    assert [row["shard"] for row in manifest] == [f"faces-{i // 2:05d}.tfrecord" for i in range(9)]

    again = prepare(src, out, faces=True, size=32, shard_size=2, workers=0, progress=False)
    assert again["run"]["processed"] == 0 and again["faces"] == 9
    _check_consistent(out, sources, 32)


def test_resume_after_a_kill_between_shard_and_manifest(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    names = [f"{i:02d}.png" for i in range(5)]
    _noise_images(src, names)
    real_append = prepare_module.append_jsonl
    calls = []

    def dying_append(path, rows, sync=False):
        if path.name == "manifest.jsonl":
            calls.append(path)
            if len(calls) == 2:
                # half a row, as a kill during the write would leave
                with path.open("a") as f:
                    f.write('{"id": "half')
                raise KeyboardInterrupt
        real_append(path, rows, sync)

    monkeypatch.setattr(prepare_module, "append_jsonl", dying_append)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, faces=True, size=32, shard_size=2, workers=0, progress=False)
    monkeypatch.undo()
    assert len(list(out.glob("faces-*.tfrecord"))) == 2  # the second has no manifest rows
    stats = prepare(src, out, faces=True, size=32, shard_size=2, workers=0, progress=False)
    assert stats["run"]["removed_orphan_shards"] == ["faces-00001.tfrecord"]
    manifest, _ = _check_consistent(out, names, 32)
    assert len(manifest) == 5


def _crash_on_request(path):
    """Runs in a worker process: dies on inputs named crash*, like a decoder segfault."""
    if os.path.basename(path).startswith("crash"):
        os._exit(3)
    return prepare_module._process(path)


def test_a_crashing_worker_rejects_only_its_input(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    names = ["a.png", "b.png", "crash.png", "d.png", "e.png"]
    _noise_images(src, names)
    monkeypatch.setattr(prepare_module, "_process", _crash_on_request)
    stats = prepare(src, out, faces=True, size=32, workers=2, progress=False)
    manifest, rejected = _check_consistent(out, names, 32)
    assert [r["source"] for r in manifest] == ["a.png", "b.png", "d.png", "e.png"]
    assert rejected == [{"source": "crash.png", "reason": "worker crashed"}]
    assert stats["rejected"] == {"worker crashed": 1}


def test_contact_sheets_and_review_rejects(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    names = [f"{i:02d}.png" for i in range(7)]
    _noise_images(src, names)
    prepare(src, out, faces=True, size=32, shard_size=3, workers=0, progress=False)
    sheets = contact_sheets(out, per_sheet=4, cols=2)
    assert [p.name for p in sheets] == ["sheet-0001.png", "sheet-0002.png"]
    first = Image.open(sheets[0])
    assert first.width >= 2 * 32 and first.height > 2 * 32

    manifest = read_jsonl(out / "manifest.jsonl")
    gone = [manifest[0]["id"], manifest[4]["id"], manifest[5]["id"]]  # from shards 0 and 1
    (tmp_path / "bad.txt").write_text(f"# bad crops\n{gone[0]}\n{gone[1]}, {gone[2]}\n")
    result = apply_rejects(out, tmp_path / "bad.txt")
    assert result["removed"] == 3 and result["faces"] == 4
    remaining, rejected = _check_consistent(out, names, 32)
    assert {r["id"] for r in rejected if r["reason"] == "rejected in review"} == set(gone)
    assert len(remaining) == 4
    stats = json.loads((out / "stats.json").read_text())
    assert stats["faces"] == 4 and stats["rejected"] == {"rejected in review": 3}
    assert apply_rejects(out, tmp_path / "bad.txt")["already_removed"] == 3
    (tmp_path / "typo.txt").write_text("nope-0\n")
    with pytest.raises(ValueError, match="typo.txt: 1 id.*nope-0"):
        apply_rejects(out, tmp_path / "typo.txt")
    # a resumed prepare after review keeps the reviewed faces out
    prepare(src, out, faces=True, size=32, shard_size=3, workers=0, progress=False)
    assert len(read_jsonl(out / "manifest.jsonl")) == 4
    assert len(contact_sheets(out, per_sheet=4, cols=2)) == 1


# --- prepare with detection on shared illustrations ----------------------------------------


@needs_illustrations
def test_prepare_mixed_folder_with_detection_and_workers(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    tiles = ILLUSTRATIONS / "tadne" / "tadne_tiles"
    (src / "tiles").mkdir(parents=True)
    for name in ("tadne_r0c1.png", "tadne_r0c2.png", "tadne_r1c0.png"):
        shutil.copy(tiles / name, src / "tiles" / name)
    shutil.copy(tiles / "tadne_r0c1.png", src / "tiles" / "zz_copy_of_r0c1.png")
    shutil.copy(ILLUSTRATIONS / "renpy" / "sprites" / "eileen_happy.png", src / "eileen.png")
    shutil.copy(ILLUSTRATIONS / "renpy" / "backgrounds" / "bg_club.jpg", src / "club.jpg")
    bad = _write_bad_files(src / "bad")
    stats = prepare(src, out, cascade=CASCADE, size=64, workers=2, progress=False)
    sources = [
        "tiles/tadne_r0c1.png",
        "tiles/tadne_r0c2.png",
        "tiles/tadne_r1c0.png",
        "tiles/zz_copy_of_r0c1.png",
        "eileen.png",
        "club.jpg",
        *bad,
    ]
    manifest, rejected = _check_consistent(out, sources, 64)
    reasons = {r["source"]: r["reason"] for r in rejected}
    assert {k: v for k, v in reasons.items() if k.startswith("bad/")} == bad
    assert reasons["club.jpg"] == "no face found"
    assert reasons["tiles/zz_copy_of_r0c1.png"] == "near duplicate"
    assert {row["source"] for row in manifest} == {
        "tiles/tadne_r0c1.png",
        "tiles/tadne_r0c2.png",
        "tiles/tadne_r1c0.png",
        "eileen.png",
    }
    for row in manifest:
        x, y, w, h = row["detection"]
        assert row["box"][2] == row["box"][3] == round(1.5 * max(w, h))
        assert row["tagged"] is False
    assert stats["rejected"]["no face found"] == 1
    assert stats["run"]["workers"] == 2 and stats["images_per_second"] > 0


@needs_getchu
def test_getchu_faces_keep_their_labels(tmp_path):
    src = tmp_path / "getchu"
    src.mkdir()
    names = sorted(p.name for p in (GETCHU / "images").glob("*.jpg"))[:60]
    for name in names:
        shutil.copy(GETCHU / "images" / name, src / name)
    with open(GETCHU / "labels.csv", newline="") as f:
        expected = {row["filename"]: row for row in csv.DictReader(f)}
    out = tmp_path / "out"
    stats = prepare(src, out, faces=True, labels=GETCHU / "labels.csv", workers=0, progress=False)
    manifest, rejected = _check_consistent(out, names, 128)
    assert len(manifest) + len(rejected) == 60 and len(manifest) >= 55
    assert stats["untagged"] == 0
    for face in _records(out).values():
        row = expected[face["source"]]
        want = np.array([float(row[c]) for c in COLUMNS], np.float32)
        np.testing.assert_array_equal(face["tags"], want)
        assert face["tagged"] == 1
