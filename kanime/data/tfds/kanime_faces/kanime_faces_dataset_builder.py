"""The `kanime_faces` dataset builder: anime faces and their tags, from a manual folder.

The manual folder (`--manual_dir`, default `~/tensorflow_datasets/downloads/manual`)
holds one of two layouts, detected in this order:

- **shards**: the output of `kanime prepare SRC OUT` (`faces-*.tfrecord` shards and
  `manifest.jsonl`), read with kanime's record reader (no TensorFlow);
- **folder**: `images/` with the face images and `labels.csv` with a `filename` column
  and one 0/1 column per tag (`blonde_hair`, ...), the layout of a getchu-faces-128 folder.
  Images that `labels.csv` does not list are kept as untagged faces (`tagged=0`); a
  face's id is its file name.

Each layout may also sit in a single sub-folder of the manual folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from kanime.data.prepare import read_labels
from kanime.data.tfds.source import RESOLUTIONS
from kanime.data.tfrecords import decode_example, iter_records, list_shards
from kanime.tags import PAPER_TAGS

SHARD_GLOB = "faces-*.tfrecord"
MANIFEST = "manifest.jsonl"
IMAGES = "images"
LABELS = "labels.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_HOMEPAGE = "https://arxiv.org/abs/1708.05509"

_DESCRIPTION = """\
Square anime character face crops with the 34 tags used by Jin et al. (2017),
"Towards the Automatic Anime Characters Creation with Generative Adversarial Networks":
13 hair colours, 10 eye colours, 5 hair styles and 6 other attributes. The faces are
not downloaded: build them from your own `kanime prepare` output or from a face folder
with a labels CSV (see the manual download instructions).
"""

_CITATION = """\
@article{jin2017towards,
  title   = {Towards the Automatic Anime Characters Creation with Generative Adversarial
             Networks},
  author  = {Jin, Yanghua and Zhang, Jiakai and Li, Minjun and Tian, Yingtao and Zhu, Huachun
             and Fang, Zhihao},
  journal = {arXiv preprint arXiv:1708.05509},
  year    = {2017}
}
"""


def _tag_columns() -> str:
    return ",".join(name.replace(" ", "_") for name in PAPER_TAGS.names)


def find_layout(manual_dir) -> tuple[str, Path]:
    """Detects the layout of a manual folder.

    Args:
        manual_dir: the manual download folder.

    Returns:
        `("shards", folder)` for a `kanime prepare` output, `("folder", folder)` for
        `images/` + `labels.csv`.

    Raises:
        FileNotFoundError: neither layout is there; the message names the expected paths.
    """
    root = Path(os.fspath(manual_dir))
    candidates = [root]
    if root.is_dir():
        candidates += sorted(p for p in root.iterdir() if p.is_dir() and p.name != IMAGES)
    for folder in candidates:
        if any(folder.glob(SHARD_GLOB)):
            return "shards", folder
        if (folder / IMAGES).is_dir() and (folder / LABELS).is_file():
            return "folder", folder
    raise FileNotFoundError(
        f"No kanime faces found in the manual folder {str(root)!r}. Expected either\n"
        f"  (a) shards from `kanime prepare`: {root / SHARD_GLOB} (and {root / MANIFEST}), or\n"
        f"  (b) a face folder: {root / IMAGES}/ and {root / LABELS}\n"
        "(or one of these inside a single sub-folder). "
        "See the manual download instructions of `kanime_faces`."
    )


def _square_rgb(image: np.ndarray, resolution: int, name: str) -> np.ndarray:
    """An RGB uint8 image resized to `resolution` (INTER_AREA) when its size differs."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Face {name!r}: expected an RGB image. Received shape {image.shape}")
    height, width = image.shape[:2]
    if height != width:
        raise ValueError(f"Face {name!r}: expected a square crop. Received {width}x{height}")
    if height != resolution:
        image = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image, dtype=np.uint8)


def _decode(data: bytes, name: str) -> np.ndarray:
    """Decodes image bytes (any format cv2 reads) to RGB uint8."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"Face {name!r}: the image cannot be decoded ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _tag_names(tags: np.ndarray) -> list[str]:
    return [PAPER_TAGS.names[i] for i in np.flatnonzero(tags >= 0.5)]


class KanimeFacesConfig(tfds.core.BuilderConfig):
    """One resolution of `kanime_faces`.

    Args:
        resolution: the side of the square images, in pixels.
    """

    def __init__(self, *, resolution: int, **kwargs):
        if resolution not in RESOLUTIONS:
            raise ValueError(f"Expected a resolution in {RESOLUTIONS}. Received: {resolution}")
        super().__init__(
            name=str(resolution),
            description=f"Faces resized to {resolution}x{resolution} with cv2.INTER_AREA.",
            **kwargs,
        )
        self.resolution = resolution


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for `kanime_faces` (one config per resolution: `64`, `128`)."""

    name = "kanime_faces"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [KanimeFacesConfig(resolution=r) for r in RESOLUTIONS]
    DEFAULT_CONFIG_NAME = "64"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put ONE of these in the manual folder (`--manual_dir`, by default
`~/tensorflow_datasets/downloads/manual/`), either directly or in a single sub-folder:

(a) the output of `kanime prepare SRC OUT`: the `{SHARD_GLOB}` shards and
    `{MANIFEST}` (copy or link the whole OUT folder);
(b) a face folder: `{IMAGES}/` with the square face images ({", ".join(IMAGE_SUFFIXES)})
    and `{LABELS}` with the header
    `filename,{_tag_columns()}`
    and one row of 0/1 values per image (the layout of a getchu-faces-128 folder).
    Images missing from `{LABELS}` are kept untagged.

Images whose size differs from the config's resolution are resized with cv2.INTER_AREA.
"""

    def _info(self) -> tfds.core.DatasetInfo:
        r = self.builder_config.resolution
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(r, r, 3)),
                    "tags": tfds.features.Tensor(shape=(len(PAPER_TAGS),), dtype=np.float32),
                    "tag_names": tfds.features.Sequence(
                        tfds.features.ClassLabel(names=list(PAPER_TAGS.names))
                    ),
                    "tagged": np.bool_,
                    "id": tfds.features.Text(),
                    "source": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "tags"),
            homepage=_HOMEPAGE,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        layout, folder = find_layout(dl_manager.manual_dir)
        return {"train": self._generate_examples(layout, folder)}

    def _generate_examples(self, layout: str, folder: Path):
        resolution = self.builder_config.resolution
        faces = _shard_faces(folder) if layout == "shards" else _folder_faces(folder)
        for face_id, data, tags, tagged, source in faces:
            tags = np.asarray(tags, dtype=np.float32)
            if tags.shape != (len(PAPER_TAGS),):
                if tagged or tags.size:
                    raise ValueError(
                        f"Face {face_id!r}: expected {len(PAPER_TAGS)} tag values. "
                        f"Received shape {tags.shape}"
                    )
                tags = np.zeros((len(PAPER_TAGS),), dtype=np.float32)
            image = _square_rgb(_decode(data, face_id), resolution, face_id)
            yield (
                face_id,
                {
                    "image": image,
                    "tags": tags,
                    "tag_names": _tag_names(tags),
                    "tagged": bool(tagged),
                    "id": face_id,
                    "source": source,
                },
            )


def _shard_faces(folder: Path):
    """`(id, image bytes, tags, tagged, source)` of every record of a `kanime prepare` output."""

    for shard in list_shards(str(folder / SHARD_GLOB)):
        for record in iter_records(shard):
            face = decode_example(record)
            yield face["id"], face["image"], face["tags"], face["tagged"], face["source"]


def _folder_faces(folder: Path):
    """`(id, image bytes, tags, tagged, source)` of every image of an `images/` folder."""

    labels = read_labels(folder / LABELS, PAPER_TAGS)
    images = sorted(p for p in (folder / IMAGES).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    names = {p.name for p in images}
    missing = sorted(set(labels) - names)
    if missing:
        raise FileNotFoundError(
            f"{folder / LABELS} lists {len(missing)} image(s) missing from "
            f"{folder / IMAGES}/, e.g. {missing[:3]}"
        )
    for path in images:
        tags = labels.get(path.name)
        tagged = tags is not None
        if tags is None:
            tags = np.zeros((len(PAPER_TAGS),), dtype=np.float32)
        yield path.name, path.read_bytes(), tags, tagged, f"{IMAGES}/{path.name}"
