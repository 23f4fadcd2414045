"""Applying a tagger: scores and tags for untagged faces, and `kanime tag`.

A `Tagger` loads one of two kinds of model and gives, for a batch of uint8 RGB
faces, one score per tag of the vocabulary (34 for `PAPER_TAGS`) and, with the
group rules of `TagVocabulary.from_scores`, 0/1 tags:

- **kanime**: the `tagger.keras` made by `kanime fit-tagger` (or its run folder).
  `settings.json` beside it gives the image size, the tag names of its outputs
  and, when present, the threshold (else `evaluation.json`'s); images go in as
  [-1, 1].
- **deepdanbooru**: a DeepDanbooru-style project folder: a Keras model file
  (`.h5` or `.keras`; `project.json`'s `model` names `model-NAME.h5` when there
  are several) and `tags.txt`, one Danbooru tag per line in the order of the
  model's sigmoid outputs. Images go in as RGB [0, 1] at the model's input size.
  Danbooru tags are matched to ours by name (case, `_` or space) and through
  `DANBOORU_SYNONYMS`; an optional `mapping.json` in the folder overrides it.
  Our tags with no counterpart score 0 and are named once in a warning.

Faces are centre-cropped to a square (as `kanime prepare --faces` does) and
resized to the model's input with `cv2.INTER_AREA` (shrinking) or
`cv2.INTER_LINEAR` (enlarging).

`tag_folder` tags every image under a folder and writes a labels CSV in the
format `kanime prepare --labels` reads (`kanime.data.prepare.read_labels`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

import cv2
import keras
import numpy as np

from kanime.atomic import atomic_path
from kanime.data.decode import MAX_PIXELS, MIN_SIZE, BadImage, decode_image, scan
from kanime.tags import PAPER_TAGS, TagVocabulary, _canonical

TAGGER_FILE = "tagger.keras"
"""The model file of a `kanime fit-tagger` run folder."""

DANBOORU_TAGS = "tags.txt"
DANBOORU_MAPPING = "mapping.json"
DANBOORU_PROJECT = "project.json"
MODEL_SUFFIXES = (".keras", ".h5")
LABELS_FILE = "labels.csv"
"""The default name of the labels CSV `kanime tag` writes in the image folder."""

DANBOORU_SYNONYMS = {
    "blonde hair": ("blonde_hair", "blond_hair"),
    "silver hair": ("silver_hair",),
    "gray hair": ("grey_hair", "gray_hair"),
    "long hair": ("long_hair", "very_long_hair", "absurdly_long_hair"),
    "twintails": ("twintails", "low_twintails", "short_twintails"),
    "drill hair": ("drill_hair", "twin_drills"),
    "ponytail": ("ponytail", "side_ponytail", "high_ponytail"),
    "ribbon": ("ribbon", "hair_ribbon"),
}
"""Danbooru tags that stand for one of our tags where the names differ.

A tag of ours scores the highest of its Danbooru tags that `tags.txt` lists; a
tag not in this table is looked for under its own name (`blue eyes` ->
`blue_eyes`), which is the Danbooru spelling of the other 26 tags (every eye
colour, the other hair colours, `short_hair`, `blush`, `smile`, `open_mouth`,
`hat`, `glasses`). Danbooru spells gray `grey_hair` and has merged
`silver_hair` into it, so with a recent `tags.txt` silver hair has no
counterpart and grey faces are tagged gray hair; a `mapping.json` of
`{"silver hair": ["grey_hair"], "gray hair": []}` turns that around.
"""


class Tagger:
    """A tagger model that scores and tags faces.

    Args:
        path: a `tagger.keras` file or the `kanime fit-tagger` run folder that
            holds it; or a DeepDanbooru-style folder (a `.h5`/`.keras` model and
            `tags.txt`, optional `project.json` and `mapping.json`), or its
            model file with `tags.txt` beside it.
        vocabulary: the tags to score, in this order.
        threshold: replaces every group's threshold in `tags`. By default: the
            `threshold` of the run's `settings.json` (or `evaluation.json`) for
            a kanime tagger; the vocabulary's group thresholds otherwise.
        batch_size: faces per model call.
        mapping: `{our tag: Danbooru tag or list of them}` applied over
            `DANBOORU_SYNONYMS` and `mapping.json` (DeepDanbooru only); an empty
            list means "no counterpart".

    Attributes:
        kind: `"kanime"` or `"deepdanbooru"`.
        model_path: the model file.
        image_size: `(height, width)` the model takes.
        sources: for each of our tags, the model outputs (indices) it reads.
        missing: our tags no output stands for (they always score 0).
        fingerprint: a hash of the model file and of the settings that turn its
            outputs into tags (`kanime prepare` records it).

    Examples:
        >>> import os, tempfile
        >>> from kanime.tagger import build_tagger
        >>> run = tempfile.mkdtemp()
        >>> build_tagger(32, channels=4).save(os.path.join(run, "tagger.keras"))
        >>> tagger = Tagger(run)
        >>> tagger.kind, tagger.image_size
        ('kanime', (32, 32))
        >>> faces = np.zeros((3, 48, 48, 3), np.uint8)
        >>> tagger.scores(faces).shape, tagger.tags(faces).shape
        ((3, 34), (3, 34))
    """

    def __init__(
        self,
        path,
        vocabulary: TagVocabulary = PAPER_TAGS,
        threshold: float | None = None,
        batch_size: int = 64,
        mapping: dict | None = None,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
        self.path = Path(path)
        self.vocabulary = vocabulary
        self.batch_size = int(batch_size)
        self.kind, self.model_path = _locate(self.path)
        folder = self.model_path.parent
        self.model = _load_model(self.model_path)
        outputs = _output_count(self.model, self.model_path)
        if self.kind == "kanime":
            settings = _read_json(folder / "settings.json")
            evaluation = _read_json(folder / "evaluation.json")
            names = settings.get("tags")
            if names is None:
                names = list(vocabulary.names)
                source = f"the {len(vocabulary)} tags of the vocabulary (no settings.json tags)"
            else:
                source = f"{folder / 'settings.json'} lists {len(names)} tags"
            if len(names) != outputs:
                raise ValueError(
                    f"{self.model_path} has {outputs} outputs but {source}: they must match."
                )
            self.sources = _match_names(names, vocabulary, {})
            if threshold is None:
                threshold = settings.get("threshold", evaluation.get("threshold"))
            self.value_range = (-1.0, 1.0)
            self.image_size = _input_size(self.model, self.model_path, settings.get("image_size"))
        else:
            names = _read_danbooru_tags(folder / DANBOORU_TAGS)
            if len(names) != outputs:
                raise ValueError(
                    f"{folder / DANBOORU_TAGS} lists {len(names)} tags but {self.model_path} "
                    f"has {outputs} outputs: one tag per output, in order, is expected."
                )
            table = {k: v for k, v in DANBOORU_SYNONYMS.items() if k in vocabulary}
            if (folder / DANBOORU_MAPPING).is_file():
                table.update(_read_mapping(folder / DANBOORU_MAPPING, vocabulary))
            if mapping:
                table.update(_check_mapping(mapping, vocabulary, "the mapping argument"))
            self.sources = _match_names(names, vocabulary, table)
            project = _read_json(folder / DANBOORU_PROJECT)
            size = None
            if "image_width" in project and "image_height" in project:
                size = (project["image_height"], project["image_width"])
            self.value_range = (0.0, 1.0)
            self.image_size = _input_size(self.model, self.model_path, size)
        self.threshold = None if threshold is None else float(threshold)
        self.names = list(names)
        self.missing = [vocabulary.names[i] for i, s in enumerate(self.sources) if not s]
        if self.missing:
            what = "no DeepDanbooru counterpart" if self.kind == "deepdanbooru" else "no output"
            warnings.warn(
                f"{len(self.missing)} of {len(vocabulary)} tags have {what} in "
                f"{self.model_path} and will score 0: {', '.join(self.missing)}",
                UserWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        height, width = self.image_size
        return (
            f"Tagger({self.kind}, {self.model_path}, {len(self.names)} outputs, "
            f"{height}x{width}, {len(self.vocabulary) - len(self.missing)} of "
            f"{len(self.vocabulary)} tags)"
        )

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the model file and of what turns its outputs into tags."""
        digest = hashlib.sha256()
        with open(self.model_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        used = [self.sources, self.threshold, self.image_size, self.value_range]
        digest.update(json.dumps(used).encode())
        return "sha256:" + digest.hexdigest()[:16]

    def preprocess(self, images) -> np.ndarray:
        """Centre-crops, resizes and scales uint8 RGB faces to the model's input (float32)."""
        height, width = self.image_size
        low, high = self.value_range
        out = np.empty((len(images), height, width, 3), dtype="float32")
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    "Expected uint8 RGB images of shape (height, width, 3). Received: "
                    f"dtype={image.dtype}, shape={image.shape} (image {i})"
                )
            image = centre_square(image)
            if image.shape[:2] != (height, width):
                shrink = image.shape[0] > height or image.shape[1] > width
                method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                image = cv2.resize(image, (width, height), interpolation=method)
            out[i] = image
        return out * ((high - low) / 255.0) + low

    def scores(self, images) -> np.ndarray:
        """Scores in [0, 1], `(n, len(vocabulary))` float32, for uint8 RGB faces.

        Args:
            images: a `(n, h, w, 3)` uint8 array, or a sequence of `(h, w, 3)`
                uint8 arrays of any sizes.
        """
        n = len(images)
        raw = np.zeros((n, len(self.names)), dtype="float32")
        for start in range(0, n, self.batch_size):
            batch = self.preprocess(images[start : start + self.batch_size])
            raw[start : start + len(batch)] = np.asarray(self.model.predict_on_batch(batch))
        out = np.zeros((n, len(self.vocabulary)), dtype="float32")
        for i, columns in enumerate(self.sources):
            if columns:
                out[:, i] = raw[:, columns].max(axis=1)
        return out

    def tags(self, images) -> np.ndarray:
        """0/1 tags, `(n, len(vocabulary))` float32: `scores` through the group rules.

        An exclusive group (hair colour, eye colour, hair style) keeps its best
        tag when it passes the threshold; every other tag is kept on its own.
        """
        return self.vocabulary.from_scores(self.scores(images), threshold=self.threshold)


def centre_square(image: np.ndarray) -> np.ndarray:
    """The centred square of an image, as `kanime prepare --faces` cuts it.

    >>> centre_square(np.zeros((40, 100, 3), np.uint8)).shape
    (40, 40, 3)
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


# --- loading -------------------------------------------------------------------------------


def _locate(path: Path) -> tuple[str, Path]:
    """`(kind, model file)` for a tagger path."""
    expected = (
        f"a {TAGGER_FILE} file, a `kanime fit-tagger` run folder, or a DeepDanbooru "
        f"project folder (a .h5 or .keras model and {DANBOORU_TAGS})"
    )
    if not path.exists():
        raise FileNotFoundError(f"Tagger not found: {path}. Expected {expected}.")
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise ValueError(
                f"{path} is not a Keras model file (.keras or .h5). Expected {expected}."
            )
        beside = path.parent
        if (beside / DANBOORU_TAGS).is_file() and not (beside / "settings.json").is_file():
            return "deepdanbooru", path
        return "kanime", path
    if (path / DANBOORU_TAGS).is_file():
        return "deepdanbooru", _danbooru_model(path)
    if (path / TAGGER_FILE).is_file():
        return "kanime", path / TAGGER_FILE
    models = sorted(p.name for p in path.iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
    found = f" It holds {', '.join(models)} but no {DANBOORU_TAGS}." if models else ""
    raise FileNotFoundError(
        f"{path} has no {TAGGER_FILE} and no {DANBOORU_TAGS}.{found} Expected {expected}."
    )


def _danbooru_model(folder: Path) -> Path:
    project = _read_json(folder / DANBOORU_PROJECT)
    if project.get("model"):
        for suffix in MODEL_SUFFIXES[::-1]:
            named = folder / f"model-{project['model']}{suffix}"
            if named.is_file():
                return named
    models = sorted(p for p in folder.iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
    if not models:
        raise FileNotFoundError(
            f"{folder} has {DANBOORU_TAGS} but no model file (.h5 or .keras), e.g. "
            "model-resnet_custom_v3.h5."
        )
    if len(models) > 1:
        raise ValueError(
            f"{folder} holds several model files ({', '.join(p.name for p in models)}): pass "
            f"the one to use, or name it in {DANBOORU_PROJECT} (`model`: NAME for model-NAME.h5)."
        )
    return models[0]


def _load_model(path: Path):
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError(f"{path}: not a Keras model that loads ({type(e).__name__}: {e})") from e


def _output_count(model, path) -> int:
    shapes = model.output_shape
    if isinstance(shapes, list | tuple) and shapes and isinstance(shapes[0], list | tuple):
        if len(shapes) != 1:
            raise ValueError(
                f"{path}: expected one output of shape (N, k) (a score per tag). "
                f"Received {len(shapes)} outputs: {shapes}"
            )
        shapes = shapes[0]
    if len(shapes) != 2 or shapes[1] is None:
        raise ValueError(
            f"{path}: expected outputs of shape (N, k) (a score per tag). Received: {shapes}"
        )
    return int(shapes[1])


def _input_size(model, path, configured) -> tuple[int, int]:
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ValueError(f"{path}: expected one image input. Received inputs: {shape}")
        shape = shape[0]
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"{path}: expected an input of RGB images (N, h, w, 3). Received: {shape}")
    if configured is not None and not isinstance(configured, list | tuple):
        configured = (configured, configured)
    if shape[1] is not None and shape[2] is not None:
        size = (int(shape[1]), int(shape[2]))
        if configured is not None and tuple(int(c) for c in configured) != size:
            raise ValueError(
                f"{path} takes {size[0]}x{size[1]} images but its settings say "
                f"{configured[0]}x{configured[1]}."
            )
        return size
    if configured is None:
        raise ValueError(
            f"{path} takes images of any size and no settings give one (settings.json "
            "`image_size`, or project.json `image_width` and `image_height`)."
        )
    return int(configured[0]), int(configured[1])


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object. Received: {type(value).__name__}")
    return value


def _read_danbooru_tags(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _read_mapping(path: Path, vocabulary) -> dict:
    return _check_mapping(_read_json(path), vocabulary, str(path))


def _check_mapping(mapping, vocabulary, where) -> dict:
    """`{our canonical tag: (Danbooru tags)}` from a user's mapping; errors name `where`."""
    checked = {}
    for key, value in mapping.items():
        try:
            name = vocabulary.names[vocabulary.index(key)]
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if value is None:
            value = []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(
                f"{where}: the value of {key!r} must be a Danbooru tag or a list of them. "
                f"Received: {value!r}"
            )
        checked[name] = tuple(value)
    return checked


def _match_names(names, vocabulary, table) -> list[list[int]]:
    """For each tag of `vocabulary`, the indices in `names` that stand for it."""
    where = {}
    for i, name in enumerate(names):
        where.setdefault(_canonical(name), i)
    sources = []
    for tag in vocabulary.names:
        candidates = table.get(tag, (tag,))
        found = sorted({where[_canonical(c)] for c in candidates if _canonical(c) in where})
        sources.append(found)
    return sources


# --- a folder of faces --------------------------------------------------------------------------


def tag_folder(
    src,
    tagger,
    out=None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    min_size: int = MIN_SIZE,
    max_pixels: int | None = MAX_PIXELS,
) -> dict:
    """Tags every face image under `src` and writes a labels CSV that `read_labels` reads.

    Args:
        src: a folder of face images (searched recursively, as `kanime prepare` does).
        tagger: a `Tagger`, or a path for one.
        out: the labels CSV (default `src/labels.csv`); written atomically.
        overwrite: replace `out` when it exists (else a `FileExistsError`).
        progress: show a progress bar.
        min_size: smaller images (short side, in pixels) are skipped.
        max_pixels: larger images are skipped as decompression bombs.

    Returns:
        `{"out", "faces", "skipped": [{"source", "reason"}], "tags": {tag: faces},
        "no_tags"}`; `no_tags` counts faces that got no tag at all.

    Images that do not decode are skipped with their reason, and so are images
    whose file name another image under `src` shares (a labels CSV matches files
    by name). The `filename` column holds each image's path relative to `src`.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"Image folder not found: {src}")
    out = Path(out) if out is not None else src / LABELS_FILE
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists. Pass --overwrite to replace it, or choose --out.")
    if not isinstance(tagger, Tagger):
        tagger = Tagger(tagger)
    vocabulary = tagger.vocabulary

    paths = [(p.relative_to(src).as_posix(), p) for p in scan(src)]
    by_name = {}
    for rel, _ in paths:
        by_name.setdefault(os.path.basename(rel), []).append(rel)
    skipped, todo = [], []
    for rel, path in paths:
        twins = [r for r in by_name[os.path.basename(rel)] if r != rel]
        if twins:
            reason = f"file name shared with {', '.join(twins)} (labels match by file name)"
            skipped.append({"source": rel, "reason": reason})
        else:
            todo.append((rel, path))

    def load(item):
        rel, path = item
        try:
            return rel, decode_image(path, min_size=min_size, max_pixels=max_pixels), None
        except BadImage as e:
            return rel, None, e.reason

    rows = []
    with _progress(progress, len(todo)) as advance:
        threads = max(1, min(8, os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for start in range(0, len(todo), tagger.batch_size):
                names, images = [], []
                for rel, image, reason in pool.map(load, todo[start : start + tagger.batch_size]):
                    if image is None:
                        skipped.append({"source": rel, "reason": reason})
                    else:
                        names.append(rel)
                        images.append(centre_square(image))
                if images:
                    rows.extend(zip(names, tagger.tags(images)))
                advance(len(todo[start : start + tagger.batch_size]))

    order = {rel: i for i, (rel, _) in enumerate(paths)}
    skipped.sort(key=lambda row: order[row["source"]])
    write_labels(out, rows, vocabulary)
    tags = np.array([row for _, row in rows]).reshape(len(rows), len(vocabulary))
    return {
        "out": str(out),
        "faces": len(rows),
        "skipped": skipped,
        "tags": {name: int(tags[:, i].sum()) for i, name in enumerate(vocabulary.names)},
        "no_tags": int((tags.sum(axis=1) == 0).sum()),
    }


def write_labels(path, rows, vocabulary: TagVocabulary = PAPER_TAGS) -> None:
    """Writes `(filename, tag vector)` rows as a labels CSV, atomically.

    The header is `filename` and one column per tag with underscores
    (`blonde_hair`), the format `kanime.data.prepare.read_labels` reads.
    """
    header = ["filename", *(name.replace(" ", "_") for name in vocabulary.names)]
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for name, vector in rows:
                writer.writerow([name, *(int(v > 0.5) for v in vector)])


@contextlib.contextmanager
def _progress(enabled, total):
    """Yields `advance(n)`, which moves a `rich` bar (or does nothing when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task("tagging", total=total)
        yield lambda n: bar.update(task, advance=n)


def load_tagger_features(path):
    """A model from a `tagger.keras` file (made by `kanime fit-tagger`) to its `features` layer.

    `path` may also be the run folder that holds `tagger.keras`.

    Returns:
        `(model, image_size)`: the sub-model from the tagger's images to the
        output of its `features` layer, and the side of the images it takes.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a Keras model, or the model has no `features` layer.
    """
    path = Path(path)
    if path.is_dir():  # a `kanime fit-tagger` run folder
        path = path / "tagger.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No tagger file at {path}. Make one with `kanime fit-tagger`.")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds for a file that is not a model
        raise ValueError(
            f"{path} is not a Keras model file (a `tagger.keras` made by `kanime fit-tagger`): "
            f"{type(error).__name__}: {error}"
        ) from None
    try:
        features = model.get_layer("features")
    except ValueError:
        raise ValueError(
            f"{path}: the model {model.name!r} has no layer named `features`; expected a "
            "tagger made by `kanime fit-tagger`."
        ) from None
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 3:
        raise ValueError(
            f"{path}: expected a model of square RGB images. Received input shape {shape}."
        )
    return keras.Model(model.input, features.output, name="tagger_features"), int(shape[1])


def tagger_features(model, images, batch_size: int = 256) -> np.ndarray:
    """The `features` output of a tagger (see `load_tagger_features`) for uint8 images.

    The images are scaled to [-1, 1], the tagger's input range; they must
    already be at the tagger's input size.
    """
    x = np.asarray(images).astype(np.float32) / 127.5 - 1.0
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float32).reshape(len(x), -1)
