import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from kanime.data.decode import decode_image, scan
from kanime.data.detect import (
    CASCADE_SHA256,
    CASCADE_URL,
    FaceDetector,
    cascade_path,
    crop_square,
    grow_box,
)

CASCADE = SHARED_DATA / "lbpcascade_animeface.xml"
ILLUSTRATIONS = SHARED_DATA / "illustrations"
needs_cascade = pytest.mark.skipif(
    not CASCADE.exists(), reason=f"the face cascade is not at {CASCADE} (shared test data)"
)
needs_illustrations = pytest.mark.skipif(
    not ILLUSTRATIONS.exists() or not CASCADE.exists(),
    reason=f"the shared illustrations or cascade are not under {SHARED_DATA}",
)


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(cascade_path(CASCADE))


def test_cascade_url_and_hash():
    assert CASCADE_URL.startswith(
        "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/"
    )
    assert CASCADE_URL.endswith("/lbpcascade_animeface.xml")
    assert len(CASCADE_SHA256) == 64


@needs_cascade
def test_cascade_override_is_checked(tmp_path):
    assert cascade_path(CASCADE) == str(CASCADE)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        cascade_path(tmp_path / "missing.xml")
    (tmp_path / "other.xml").write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match=f"other.xml.*expected {CASCADE_SHA256}"):
        cascade_path(tmp_path / "other.xml")


@needs_cascade
def test_opencv_without_cascade_classifier(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    with pytest.raises(ImportError, match="opencv-python-headless<5"):
        FaceDetector(CASCADE)


def test_grow_box_is_a_centred_square():
    assert grow_box((10, 20, 40, 40)) == (0, 10, 60, 60)
    x, y, w, h = grow_box((100, 100, 30, 50), factor=1.5)
    assert w == h == 75
    assert (x + w / 2, y + h / 2) == pytest.approx((115, 125), abs=0.5)
    assert grow_box((0, 0, 10, 10)) == (-2, -2, 15, 15)  # may leave the image
    with pytest.raises(ValueError, match="positive"):
        grow_box((0, 0, 0, 10))


def _ramp(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy % 256, xx % 256, (yy + xx) % 256], -1).astype(np.uint8)


def test_crop_square_inside_the_image():
    image = _ramp(100, 120)
    crop = crop_square(image, (10, 20, 40, 40), 40)
    np.testing.assert_array_equal(crop, image[20:60, 10:50])
    small = crop_square(image, (10, 20, 40, 40), 20)
    assert small.shape == (20, 20, 3) and small.dtype == np.uint8
    big = crop_square(image, (10, 20, 40, 40), 128)
    assert big.shape == (128, 128, 3)


def test_crop_square_pads_at_borders_by_replicating_edges():
    image = _ramp(50, 80)
    crop = crop_square(image, (-10, -5, 40, 40), 40)
    np.testing.assert_array_equal(crop[5:, 10:], image[0:35, 0:30])
    np.testing.assert_array_equal(crop[0, 10:], image[0, 0:30])  # top rows repeat row 0
    np.testing.assert_array_equal(crop[5:, 0], image[0:35, 0])  # left columns repeat column 0
    crop = crop_square(image, (60, 30, 40, 40), 40)  # past the bottom-right corner
    np.testing.assert_array_equal(crop[:20, :20], image[30:50, 60:80])
    np.testing.assert_array_equal(crop[-1, -1], image[-1, -1])
    wide = crop_square(image, (0, 10, 80, 20), 16)  # a non-square box is squared first
    assert wide.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="outside"):
        crop_square(image, (200, 200, 10, 10), 16)


def _faces_in(detector, folder, size=128):
    counts = {}
    for path in scan(folder):
        rgb = decode_image(path)
        boxes = detector.detect(rgb)
        areas = [w * h for _, _, w, h in boxes]
        assert areas == sorted(areas, reverse=True)
        for box in boxes:
            assert min(box[2], box[3]) >= detector.min_size
            assert crop_square(rgb, grow_box(box), size).shape == (size, size, 3)
        counts[path.name] = len(boxes)
    return counts


@needs_illustrations
def test_faces_in_tadne_tiles(detector):
    counts = _faces_in(detector, ILLUSTRATIONS / "tadne" / "tadne_tiles")
    assert len(counts) == 36
    missed = sorted(name for name, n in counts.items() if n == 0)
    assert len(counts) - len(missed) >= 30, f"no face found in {missed}"


@needs_illustrations
def test_faces_in_renpy_sprites(detector):
    counts = _faces_in(detector, ILLUSTRATIONS / "renpy" / "sprites")
    assert len(counts) == 13
    missed = sorted(name for name, n in counts.items() if n == 0)
    assert len(counts) - len(missed) >= 12, f"no face found in {missed}"


@needs_illustrations
def test_no_faces_in_backgrounds(detector):
    counts = _faces_in(detector, ILLUSTRATIONS / "renpy" / "backgrounds")
    assert len(counts) == 5
    assert sum(counts.values()) == 0, counts
