"""Tests of the `kanime_faces` TFDS builder: dummy data (shards layout) and a labels folder."""

import csv

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds
import yaml

from kanime.data.tfds.kanime_faces import kanime_faces_dataset_builder as kf
from kanime.tags import PAPER_TAGS


@pytest.fixture(autouse=True)
def _no_gcs():
    """No network: TFDS must not look for dataset metadata on GCS."""
    with tfds.testing.disable_gcs_access():
        yield


class KanimeFacesTest(tfds.testing.DatasetBuilderTestCase):
    """Builds both configs from `dummy_data/` (5 noise faces in `kanime prepare` layout)."""

    DATASET_CLASS = kf.Builder
    DUMMY_DATA = kf.Path(kf.__file__).parent / "dummy_data"
    BUILDER_CONFIG_NAMES_TO_TEST = ["64", "128"]
    SPLITS = {"train": 5}
    SKIP_CHECKSUMS = True


def _write_folder(root, rng, n=4, size=40):
    """A (b)-layout folder: `images/` with noise PNGs, `labels.csv` listing all but the last."""
    (root / "images").mkdir(parents=True)
    tags = PAPER_TAGS.sample(n, rng)
    header = ["filename"] + [name.replace(" ", "_") for name in PAPER_TAGS.names]
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(n):
            noise = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            cv2.imwrite(str(root / "images" / f"face{i}.png"), noise)
            if i < n - 1:
                writer.writerow([f"face{i}.png"] + [int(v) for v in tags[i]])
    return tags


def test_folder_layout_tags_match_csv(tmp_path):
    manual = tmp_path / "manual"
    tags = _write_folder(manual, np.random.default_rng(0))
    builder = kf.Builder(config="64", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    faces = {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(faces) == [f"face{i}.png" for i in range(4)]
    for i in range(4):
        face = faces[f"face{i}.png"]
        assert face["image"].shape == (64, 64, 3)
        if i < 3:
            assert face["tagged"]
            np.testing.assert_array_equal(face["tags"], tags[i])
            assert sorted(face["tag_names"]) == list(np.flatnonzero(tags[i]))
        else:
            assert not face["tagged"]
            assert not face["tags"].any()
            assert len(face["tag_names"]) == 0


def test_missing_manual_folder_names_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv") as info:
        kf.find_layout(tmp_path)
    assert str(tmp_path / "faces-*.tfrecord") in str(info.value)


def test_training_reads_the_builder_as_a_data_source(tmp_path):
    from kanime.recipe import RecipeError
    from kanime.tagger import fit_tagger

    manual = tmp_path / "manual"
    _write_folder(manual, np.random.default_rng(1), n=40)  # the last face is untagged
    recipe = {
        "name": "tfds-tagger", "seed": 0,
        "data": {"source": "tfds", "path": str(manual), "tfds_dir": str(tmp_path / "tfds"),
                 "holdout": 7},
        "model": {"resolution": 64, "channels": 4},
        "training": {"batch_size": 8, "steps": 2},
        "logging": {"log_every": 2, "backup_every": 2},
    }  # fmt: skip
    path = tmp_path / "tagger.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = fit_tagger(path, tmp_path / "run", progress=False)
    # 39 tagged faces reach the tagger: 7 held out, 32 trained on.
    assert result.step == 2
    assert (result.evaluation["held_out"], result.evaluation["trained_on"]) == (7, 32)
    assert (tmp_path / "tfds" / "kanime_faces" / "64").is_dir()  # TFDS's copy, where told
    with pytest.raises(RecipeError, match="64 or 128 px"):
        fit_tagger(path, tmp_path / "run32", ["model.resolution=32"], progress=False)
