"""`kanime prepare`: a folder of illustrations in, tagged face crops in TFRecord shards out.

Each input file goes through: decode (`kanime.data.decode`) -> find faces
(`kanime.data.detect`: cascade boxes grown 1.5x, square crops resized to
`size`; or, with `faces=True`, the whole image is the face: a centred square
crop) -> near-duplicate removal (`kanime.data.dedupe`) -> tags from a labels CSV,
or from a tagger (`kanime.tagger.apply.Tagger`, passed in) for faces the CSV does not list
-> an optional year filter from a metadata CSV -> a record in a shard.

The output folder holds:

- `faces-NNNNN.tfrecord`: the faces, written by `kanime.data.tfrecords.ShardWriter`;
- `manifest.jsonl`: one row per face: id, source, box (the grown square cut from
  the source, `x, y, w, h`, as in the record), detection (the cascade's box),
  tags (names), tagged, tagged_by (`"labels"`, `"tagger"` or null), year, shard, hash;
- `rejected.jsonl`: one row per input (or face) not used, with the reason;
- `stats.json`: counts (inputs, faces, rejected by reason, faces per tag, untagged),
  time and speed;
- `labels.png`: a bar chart of the faces per tag;
- `prepare.json`: the options that fix the content of the records (size, mode,
  tags, the tagger's fingerprint), checked when a run resumes.

Durability: a shard is the unit of work that survives a kill. Faces are buffered
for the current shard; when the shard file has been committed (atomically), the
manifest rows of its faces are appended. Inputs that give no face are appended
to `rejected.jsonl` at once. A rerun skips every input listed in the manifest or
in `rejected.jsonl`, continues the shard numbering, and rebuilds the
near-duplicate filter from the hashes in the manifest; a shard committed just
before a kill but missing from the manifest is removed and its inputs redone.
All faces of one input go into the same shard, so a shard may hold a few more
than `shard_size` faces.

Decoding, detection, cropping and JPEG encoding run in a process pool; dedupe,
tagging and writing run in the calling process, in input order, so the result
does not depend on the number of workers. With a tagger, the results of the pool
wait in order until a batch of faces needs tags; the tagger scores the decoded
JPEG crops (what the records hold) in one call, then the waiting inputs are
handled as without one. Nothing of a waiting input is on disk, so a kill loses
no more than the shard being filled.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import hashlib
import json
import multiprocessing
import os
import re
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from kanime.atomic import atomic_path
from kanime.data.decode import MAX_PIXELS, MIN_SIZE, BadImage, decode_image, reason_kind, scan
from kanime.data.dedupe import NearDuplicateFilter, phash
from kanime.data.detect import GROW, FaceDetector, cascade_path, crop_square, grow_box
from kanime.data.tfrecords import ShardWriter, encode_example
from kanime.progress import progress_bar
from kanime.tags import PAPER_TAGS, TagVocabulary

MANIFEST = "manifest.jsonl"
REJECTED = "rejected.jsonl"
STATS = "stats.json"
SETTINGS = "prepare.json"
LABELS_PLOT = "labels.png"
SHARD_PREFIX = "faces"
JPEG_QUALITY = 95

_SHARD_NAME = re.compile(rf"^{SHARD_PREFIX}-(\d+)\.tfrecord$")


# --- labels and metadata ---------------------------------------------------------------


def _key(name: str) -> str:
    """The matching key of a file: its base name."""
    return os.path.basename(str(name).strip().replace("\\", "/"))


def read_labels(path, vocabulary: TagVocabulary = PAPER_TAGS) -> dict[str, np.ndarray]:
    """Reads a labels CSV: `filename` and one 0/1 column per tag (`blonde_hair`, ...).

    Returns:
        `{file base name: float32 multi-hot vector in vocabulary order}`.

    Raises a `ValueError` naming the file and the column, line or value for an
    unknown column, a missing tag column, a repeated file name or a value that
    is not 0 or 1.
    """
    path = os.fspath(path)
    expected = ", ".join(n.replace(" ", "_") for n in vocabulary.names)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "filename" not in header:
            raise ValueError(
                f"Labels file {path}: no `filename` column. Expected the header "
                f"filename,{expected.replace(', ', ',')}. Received: {','.join(header)}"
            )
        file_col = header.index("filename")
        columns = {}
        for j, name in enumerate(header):
            if j == file_col:
                continue
            if name not in vocabulary:
                close = vocabulary.suggest(name)
                hint = f" Did you mean {close[0].replace(' ', '_')!r}?" if close else ""
                raise ValueError(
                    f"Labels file {path}: unknown column {name!r}.{hint} Expected `filename` "
                    f"and one column per tag: {expected}"
                )
            i = vocabulary.index(name)
            if i in columns.values():
                raise ValueError(f"Labels file {path}: the tag column {name!r} appears twice")
            columns[j] = i
        missing = [vocabulary.names[i] for i in range(len(vocabulary)) if i not in columns.values()]
        if missing:
            raise ValueError(
                f"Labels file {path}: missing tag column(s) "
                f"{', '.join(m.replace(' ', '_') for m in missing)}"
            )
        labels = {}
        for line, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"Labels file {path}, line {line}: {len(row)} fields; expected {len(header)}"
                )
            key = _key(row[file_col])
            if not key:
                raise ValueError(f"Labels file {path}, line {line}: empty filename")
            if key in labels:
                raise ValueError(f"Labels file {path}, line {line}: {key!r} is listed twice")
            vector = np.zeros((len(vocabulary),), dtype="float32")
            for j, i in columns.items():
                cell = row[j].strip()
                try:
                    value = float(cell)
                except ValueError:
                    value = None
                if value not in (0.0, 1.0):
                    raise ValueError(
                        f"Labels file {path}, line {line}, column {header[j]!r}: expected 0 "
                        f"or 1. Received: {cell!r}"
                    )
                vector[i] = value
            labels[key] = vector
    return labels


def read_years(path) -> dict[str, int]:
    """Reads a metadata CSV with `filename` and `year` columns: `{base name: year}`.

    Rows with an empty year are left out (those files count as having no year).
    """
    path = os.fspath(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [h.strip() for h in reader.fieldnames or []]
        if "filename" not in fields or "year" not in fields:
            raise ValueError(
                f"Metadata file {path}: expected the columns filename and year. "
                f"Received: {','.join(fields)}"
            )
        reader.fieldnames = fields
        years = {}
        for line, row in enumerate(reader, start=2):
            key = _key(row.get("filename") or "")
            cell = (row.get("year") or "").strip()
            if not key or not cell:
                continue
            try:
                value = float(cell)
                if value != int(value):
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"Metadata file {path}, line {line}: year must be a whole number. "
                    f"Received: {cell!r}"
                ) from None
            years[key] = int(value)
    return years


# --- jsonl files ----------------------------------------------------------------------


def read_jsonl(path) -> list[dict]:
    """The rows of a JSON-lines file (none if it is absent).

    A last line without its newline is what a kill during an append leaves: it
    is dropped, and the file is rewritten without it.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]
        with atomic_path(path) as tmp:
            Path(tmp).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    rows = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {number}: not valid JSON ({e})") from e
    return rows


def append_jsonl(path, rows, sync=False) -> None:
    """Appends `rows` to a JSON-lines file (flushed; fsynced with `sync=True`)."""
    if not rows:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))
        f.flush()
        if sync:
            os.fsync(f.fileno())


def write_jsonl(path, rows) -> None:
    """Replaces a JSON-lines file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))


def write_json(path, value) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def shard_files(out) -> dict[int, Path]:
    """`{index: path}` of the shard files in `out`."""
    found = {}
    for path in Path(out).glob(f"{SHARD_PREFIX}-*.tfrecord"):
        match = _SHARD_NAME.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}-{index:05d}.tfrecord"


def face_id(source: str, index: int) -> str:
    """The stable id of face `index` of input `source` (its path relative to SRC).

    >>> face_id("a/b.png", 0)
    '7f9c894b6fcc-0'
    """
    return f"{hashlib.sha1(source.encode('utf-8')).hexdigest()[:12]}-{index}"


# --- work done in the pool ---------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(settings, single_thread=True):
    import cv2

    if single_thread:
        cv2.setNumThreads(1)
    _WORKER.clear()
    _WORKER.update(settings)
    if not settings["faces"]:

        _WORKER["detector"] = FaceDetector(settings["cascade"], min_size=settings["min_face"])


def _process(path) -> dict:
    """Decode, find faces, crop, encode: `{"reason": str}` or `{"faces": [...]}`."""
    try:
        return _process_or_raise(path)
    except BadImage as e:
        return {"reason": e.reason}
    except Exception as e:  # never stop the run on one input
        return {"reason": f"error ({type(e).__name__}: {str(e)[:200]})"}


def _process_or_raise(path):
    import cv2


    size = _WORKER["size"]
    rgb = decode_image(path, min_size=_WORKER["min_size"], max_pixels=_WORKER["max_pixels"])
    height, width = rgb.shape[:2]
    if _WORKER["faces"]:
        side = min(height, width)
        box = ((width - side) // 2, (height - side) // 2, side, side)
        boxes = [(box, box)]
    else:
        found = _WORKER["detector"].detect(rgb)
        if not found:
            return {"reason": "no face found"}
        boxes = [(box, grow_box(box, GROW)) for box in found]
    faces = []
    for box, square in boxes:
        crop = crop_square(rgb, square, size)
        bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        faces.append(
            {
                "detection": list(box),
                "box": list(square),
                "jpeg": jpeg.tobytes(),
                "hash": phash(crop),
            }
        )
    return {"faces": faces, "image_size": [width, height]}


def _ping():
    return True


def _pool_context():
    methods = multiprocessing.get_all_start_methods()
    # Not "fork": the caller may hold TensorFlow's threads, which a fork copies badly.
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _Workers:
    """The process pool that decodes and detects; `workers=0` works in this process.

    The pool starts (and is checked) when this object is made, before `prepare`
    touches the output folder.
    """

    def __init__(self, settings, workers):
        self.settings, self.workers = settings, workers
        self.pool = None
        if workers == 0:
            _init_worker(settings, single_thread=False)
        else:
            self.pool = self._start()

    def _start(self):
        # Checks that workers start at all: a failure here is not the fault of an input.
        pool = concurrent.futures.ProcessPoolExecutor(
            self.workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(self.settings,),
        )
        try:
            pool.submit(_ping).result()
        except BrokenProcessPool as e:
            pool.shutdown(wait=False, cancel_futures=True)
            raise RuntimeError(
                "The worker processes of `prepare` could not start. Called from a script? "
                "Guard the call with `if __name__ == '__main__':` (Python starts workers by "
                "importing the main module), or pass workers=0 to work in this process."
            ) from e
        return pool

    def _restart(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._start()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def map(self, paths):
        """Yields `(index, result)` for `paths`, in order, with bounded work in flight."""
        if self.pool is None:
            for i, path in enumerate(paths):
                yield i, _process(path)
            return
        pending = collections.deque()
        window = max(2, 4 * self.workers)
        upcoming = iter(enumerate(paths))
        while True:
            while len(pending) < window:
                item = next(upcoming, None)
                if item is None:
                    break
                pending.append((item[0], self.pool.submit(_process, item[1])))
            if not pending:
                return
            i, future = pending[0]
            try:
                result = future.result()
            except BrokenProcessPool:
                # A worker died (a crash in a decoder, out of memory): redo the inputs
                # that were in flight one at a time, so only the culprit is rejected.
                suspects = [j for j, _ in pending]
                pending.clear()
                self._restart()
                for j in suspects:
                    try:
                        result = self.pool.submit(_process, paths[j]).result()
                    except BrokenProcessPool:
                        result = {"reason": "worker crashed"}
                        self._restart()
                    yield j, result
                continue
            pending.popleft()
            yield i, result


# --- the job ----------------------------------------------------------------------------


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass


def _progress_bar(enabled):
    if not enabled:
        return _NoProgress()

    faces = "inputs, {task.fields[faces]} faces, {task.fields[rejected]} rejected"
    return progress_bar("[bold]prepare", before_time=[faces])


def _check_settings(out, settings):
    path = Path(out) / SETTINGS
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [
            f"{key}: {_shown(old, key)} before, {_shown(settings, key)} now"
            for key in ("size", "faces", "min_face", "grow", "tags", "tagger")
            if old.get(key) != settings.get(key)
        ]
        if changed:
            raise ValueError(
                f"{out} holds faces prepared with other options ({'; '.join(changed)}). "
                "Resume with the same options, or prepare into a new folder."
            )
    else:
        write_json(path, settings)


def _shown(settings, key):
    if key == "tagger" and settings.get("tagger"):
        return f"{settings.get('tagger_path')} ({settings['tagger']})"
    return repr(settings.get(key))


def _recover_shards(out, manifest) -> tuple[int, list[str]]:
    """Removes a shard committed by a killed run before its manifest rows were written.

    Returns the next shard index and the names of the removed shards.
    """
    files = shard_files(out)
    referenced = set()
    for row in manifest:
        match = _SHARD_NAME.match(row.get("shard", ""))
        if match:
            referenced.add(int(match.group(1)))
    last = max(referenced, default=-1)
    removed = []
    for index, path in files.items():
        if index in referenced:
            continue
        if index == last + 1:
            path.unlink()
            removed.append(path.name)
        else:
            raise ValueError(
                f"{path} is not listed in {Path(out) / MANIFEST}: the folder is inconsistent "
                "(a deleted or edited manifest?). Prepare into a new folder."
            )
    return last + 1, removed


def prepare(
    src,
    out,
    *,
    faces: bool = False,
    labels=None,
    size: int = 128,
    cascade=None,
    min_face: int = 48,
    metadata=None,
    min_year: int | None = None,
    allow_untagged: bool = True,
    workers: int | None = None,
    progress: bool = True,
    shard_size: int = 1000,
    vocabulary: TagVocabulary = PAPER_TAGS,
    max_distance: int = 4,
    max_pixels: int | None = MAX_PIXELS,
    min_size: int = MIN_SIZE,
    tagger=None,
) -> dict:
    """Finds, crops, dedupes and tags the faces in the images under `src`; writes them to `out`.

    Args:
        src: a folder of images (searched recursively; see `decode.IMAGE_SUFFIXES`).
        out: the output folder (created). A folder from an interrupted run is resumed.
        faces: the inputs are face crops already: each whole image, centre-cropped
            to a square, is one face (no detection).
        labels: a CSV with `filename` and one 0/1 column per tag of `vocabulary`
            (named with underscores, `blonde_hair`); rows match inputs by base name.
            A face with no row is untagged (all-zero tags, `tagged=False`).
        size: the side of the face crops, in pixels.
        cascade: a local `lbpcascade_animeface.xml` (hash-checked); by default it is
            downloaded once. Unused with `faces=True`.
        min_face: the smallest face the detector looks for, in pixels.
        metadata: a CSV with `filename` and `year` columns; the year goes into the
            records.
        min_year: with `metadata`, inputs from before this year are rejected
            ("before YEAR"), and inputs with no year too ("no year").
        allow_untagged: keep faces that have no labels row; when False they are
            rejected ("untagged"). Needs `labels`.
        workers: processes that decode and detect (default: all cores; 0 runs
            everything in this process).
        progress: show a progress bar.
        shard_size: faces per TFRecord shard.
        vocabulary: the tags.
        max_distance: faces whose perceptual hashes differ in at most this many
            bits are near duplicates: the later one is rejected. -1 keeps all.
        max_pixels: larger images are rejected as decompression bombs.
        min_size: smaller images (short side, in pixels) are rejected.
        tagger: a `kanime.tagger.apply.Tagger` (`Tagger(path, vocabulary)`): it tags the
            faces that `labels` does not list (every face without `labels`).
            Its fingerprint goes into `prepare.json`: a run cannot resume with
            another tagger, or with none.

    Returns:
        The statistics written to `out/stats.json`.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"Image folder not found: {src}")
    if int(size) < 8:
        raise ValueError(f"size must be at least 8 pixels. Received: {size}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be at least 1. Received: {shard_size}")
    if min_year is not None and metadata is None:
        raise ValueError("min_year needs a metadata CSV with filename and year columns.")
    if not allow_untagged and labels is None and tagger is None:
        raise ValueError(
            "allow_untagged=False needs a labels CSV or a tagger: every face would be rejected."
        )
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be 0 or more. Received: {workers}")

    if out.resolve() == src.resolve():
        raise ValueError(f"The output folder must differ from the image folder. Received: {out}")

    table = read_labels(labels, vocabulary) if labels is not None else None
    years = read_years(metadata) if metadata is not None else None
    if tagger is not None and not callable(getattr(tagger, "tags", None)):
        raise TypeError(
            "tagger must be a tagger object such as kanime.tagger.Tagger(path) (with a "
            f"tags(images) method). Received: {tagger!r}"
        )
    cascade_file = None
    if not faces:

        cascade_file = cascade_path(cascade)

    worker_settings = {
        "faces": bool(faces),
        "size": int(size),
        "cascade": cascade_file,
        "min_face": int(min_face),
        "min_size": int(min_size),
        "max_pixels": max_pixels,
    }
    pool = _Workers(worker_settings, workers)  # before touching OUT (see _Workers)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(f".{SHARD_PREFIX}-*.tfrecord.*.tmp"):
            stale.unlink()  # a shard that ShardWriter had not finished when a run was killed
        settings = {
            "version": 1,
            "size": int(size),
            "faces": bool(faces),
            "min_face": int(min_face),
            "grow": GROW,
            "tags": list(vocabulary.names),
            "tagger": tagger.fingerprint if tagger is not None else None,
            "tagger_path": str(tagger.model_path.resolve()) if tagger is not None else None,
        }
        _check_settings(out, settings)

        manifest = read_jsonl(out / MANIFEST)
        rejected = read_jsonl(out / REJECTED)
        next_shard, removed = _recover_shards(out, manifest)
        done_with_faces = {row["source"] for row in manifest}
        done = done_with_faces | {row["source"] for row in rejected}
        kept = NearDuplicateFilter(max_distance)
        for row in manifest:
            if row.get("hash"):
                kept.add(int(row["hash"], 16), row["id"])

        out_abs = out.resolve()
        out_inside = src.resolve() in out_abs.parents
        sources = []
        for path in scan(src):
            if out_inside and out_abs in path.resolve().parents:
                continue  # files under the output folder, inside SRC, are not inputs
            sources.append((path.relative_to(src).as_posix(), path))
        todo = [(rel, path) for rel, path in sources if rel not in done]

        # Cheap checks first: the year and the labels need no decoding.
        output = _Output(out, next_shard, shard_size, vocabulary, kept, table, years, tagger)
        output.writer_class, output.encode = ShardWriter, encode_example  # imported lazily above
        output.faces = len(manifest)
        output.rejected = len({row["source"] for row in rejected} - done_with_faces)
        work = []
        for rel, path in todo:
            key = _key(rel)
            if min_year is not None and key not in years:
                output.reject([{"source": rel, "reason": "no year"}])
            elif min_year is not None and years[key] < min_year:
                output.reject([{"source": rel, "reason": f"before {min_year}"}])
            elif not allow_untagged and tagger is None and key not in table:
                output.reject([{"source": rel, "reason": "untagged"}])
            else:
                work.append((rel, path))

        with _progress_bar(progress) as bar:
            task = bar.add_task(
                "prepare",
                total=len(sources),
                completed=len(sources) - len(work),
                faces=output.faces,
                rejected=output.rejected,
            )
            for i, result in pool.map([str(path) for _, path in work]):
                output.take(work[i][0], result)
                bar.update(task, advance=1, faces=output.faces, rejected=output.rejected)
            output.tag_waiting()
            output.flush()

        seconds = time.perf_counter() - started
        run = {
            "processed": len(todo),
            "skipped": len(sources) - len(todo),
            "removed_orphan_shards": removed,
            "workers": workers,
            "seconds": round(seconds, 3),
            "images_per_second": round(len(todo) / seconds, 3) if seconds > 0 else None,
        }
        return write_stats(out, vocabulary, inputs=len(sources), run=run)
    finally:
        pool.close()


class _Output:
    """The main-process half: dedupe, tags, and the shard buffer with its manifest rows."""

    def __init__(self, out, next_shard, shard_size, vocabulary, kept, table, years, tagger=None):
        self.out = Path(out)
        self.next_shard = next_shard
        self.shard_size = int(shard_size)
        self.vocabulary = vocabulary
        self.kept = kept
        self.table = table
        self.years = years
        self.tagger = tagger
        self.waiting, self.waiting_faces = [], 0  # results waiting for the tagger, in order
        self.faces = 0
        self.rejected = 0  # inputs
        self.records, self.rows, self.dups = [], [], []
        self.writer_class = self.encode = None  # kanime.data.tfrecords' ShardWriter, encode_example

    def reject(self, rows, inputs=1):
        """Appends rows for inputs that gave no face, at once."""
        append_jsonl(self.out / REJECTED, rows)
        self.rejected += inputs

    def _labels(self, rel):
        return self.table.get(_key(rel)) if self.table is not None else None

    def take(self, rel, result):
        """Handles the worker's result for input `rel`, in input order.

        With a tagger, an input with faces to tag waits, and so does every input
        after it, until a batch of faces (or of inputs) waits.
        """
        needs_tags = self.tagger is not None and "faces" in result and self._labels(rel) is None
        if not needs_tags and not self.waiting:
            self._take(rel, result)
            return
        self.waiting.append((rel, result))
        self.waiting_faces += len(result["faces"]) if needs_tags else 0
        if max(self.waiting_faces, len(self.waiting)) >= self.tagger.batch_size:
            self.tag_waiting()

    def tag_waiting(self):
        """Tags the waiting faces that have no labels in one call, then handles their inputs."""
        import cv2

        found = [
            face
            for rel, result in self.waiting
            if "faces" in result and self._labels(rel) is None
            for face in result["faces"]
        ]
        if found:
            crops = [
                cv2.imdecode(np.frombuffer(face["jpeg"], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                for face in found
            ]
            for face, tags in zip(found, self.tagger.tags(crops)):
                face["tags"] = tags
        waiting, self.waiting, self.waiting_faces = self.waiting, [], 0
        for rel, result in waiting:
            self._take(rel, result)

    def _take(self, rel, result):
        if "reason" in result:
            self.reject([{"source": rel, "reason": result["reason"]}])
            return
        key = _key(rel)
        labels = self._labels(rel)
        year = self.years.get(key) if self.years is not None else None
        records, rows, dups = [], [], []
        for k, found in enumerate(result["faces"]):
            fid = face_id(rel, k)
            twin = self.kept.seen(found["hash"])
            if twin is not None:
                dups.append(
                    {"source": rel, "id": fid, "reason": "near duplicate", "duplicate_of": twin}
                )
                continue
            self.kept.add(found["hash"], fid)
            tags, tagged_by = labels, "labels"
            if tags is None:
                tags, tagged_by = found.get("tags"), "tagger"
            if tags is None:
                tags, tagged_by = np.zeros((len(self.vocabulary),), dtype="float32"), None
            tagged = tagged_by is not None
            box = tuple(found["box"])
            year_value = -1 if year is None else year
            records.append(self.encode(fid, found["jpeg"], tags, int(tagged), rel, box, year_value))
            rows.append(
                {
                    "id": fid,
                    "source": rel,
                    "box": found["box"],
                    "detection": found["detection"],
                    "tags": self.vocabulary.decode(tags),
                    "tagged": tagged,
                    "tagged_by": tagged_by,
                    "year": year,
                    "hash": f"{found['hash']:016x}",
                }
            )
        if not records:
            self.reject(dups)
            return
        # All rows of an input wait for its shard: a kill before the shard is committed
        # leaves no trace of the input, so a rerun redoes it.
        self.records.extend(records)
        self.rows.extend(rows)
        self.dups.extend(dups)
        self.faces += len(records)
        if len(self.records) >= self.shard_size:
            self.flush()

    def flush(self):
        """Commits the buffered faces as one shard, then appends their manifest rows."""
        if not self.records:
            return
        name = shard_name(self.next_shard)
        with self.writer_class(
            self.out, SHARD_PREFIX, shard_size=len(self.records), start_index=self.next_shard
        ) as writer:
            for record in self.records:
                writer.write(record)
        if [os.path.basename(p) for p in writer.written] != [name]:
            raise RuntimeError(f"Expected ShardWriter to write {name}. It wrote: {writer.written}")
        for row in self.rows:
            row["shard"] = name
        append_jsonl(self.out / MANIFEST, self.rows, sync=True)
        append_jsonl(self.out / REJECTED, self.dups, sync=True)
        self.next_shard += 1
        self.records, self.rows, self.dups = [], [], []


# --- statistics -----------------------------------------------------------------------


def write_stats(out, vocabulary: TagVocabulary = PAPER_TAGS, inputs=None, run=None) -> dict:
    """Recomputes `stats.json` and `labels.png` from `manifest.jsonl` and `rejected.jsonl`.

    `inputs` and `run` (the last run's timing) are kept from the existing
    `stats.json` when not given.
    """
    out = Path(out)
    manifest = read_jsonl(out / MANIFEST)
    rejected = read_jsonl(out / REJECTED)
    previous = {}
    if (out / STATS).exists():
        previous = json.loads((out / STATS).read_text(encoding="utf-8"))
    if inputs is None:
        inputs = previous.get("inputs")
    if run is None:
        run = previous.get("run", {})
    by_reason = collections.Counter(reason_kind(row["reason"]) for row in rejected)
    per_tag = dict.fromkeys(vocabulary.names, 0)
    for row in manifest:
        for name in row.get("tags", []):
            if name in per_tag:
                per_tag[name] += 1
    with_faces = {row["source"] for row in manifest}
    stats = {
        "inputs": inputs,
        "inputs_with_faces": len(with_faces),
        "inputs_rejected": len({row["source"] for row in rejected} - with_faces),
        "faces": len(manifest),
        "shards": len({row["shard"] for row in manifest}),
        "rejected": dict(by_reason.most_common()),
        "untagged": sum(1 for row in manifest if not row.get("tagged")),
        "tags": per_tag,
        "seconds": run.get("seconds"),
        "images_per_second": run.get("images_per_second"),
        "run": run,
    }
    write_json(out / STATS, stats)
    plot_tag_counts(per_tag, out / LABELS_PLOT, faces=len(manifest), untagged=stats["untagged"])
    return stats


def plot_tag_counts(per_tag: dict, path, faces=None, untagged=None) -> Path:
    """A horizontal bar chart of faces per tag, written atomically as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(per_tag)
    values = [per_tag[n] for n in names]
    fig = Figure(figsize=(7, 1.0 + 0.24 * max(1, len(names))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(range(len(names)), values, color="#4c72b0")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    total = max(values, default=0)
    for y, v in enumerate(values):
        ax.text(v + total * 0.01, y, str(v), va="center", fontsize=7)
    ax.set_xlabel("faces")
    title = "Faces per tag"
    if faces is not None:
        title += f" ({faces} faces"
        title += f", {untagged} untagged)" if untagged is not None else ")"
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(1, total) * 1.12)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
