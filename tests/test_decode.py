import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, features

from kanime.data.decode import IMAGE_SUFFIXES, BadImage, decode_image, reason_kind, scan


def _reason(path, **kwargs):
    with pytest.raises(BadImage) as info:
        decode_image(path, **kwargs)
    assert str(path) in str(info.value)
    return info.value.reason


def test_rgb_and_gray_modes(tmp_path):
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = decode_image(tmp_path / "rgb.png")
    assert out.dtype == np.uint8 and out.shape == (40, 48, 3)
    np.testing.assert_array_equal(out, rgb)

    Image.new("L", (40, 32), 77).save(tmp_path / "gray.bmp")
    np.testing.assert_array_equal(decode_image(tmp_path / "gray.bmp"), np.full((32, 40, 3), 77))

    Image.new("1", (40, 32), 1).save(tmp_path / "bits.png")
    assert (decode_image(tmp_path / "bits.png") == 255).all()


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, :16] = (255, 0, 0, 255)  # opaque red
    rgba[:, 16:] = (0, 0, 255, 0)  # transparent blue: white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = decode_image(tmp_path / "rgba.png")
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 31]) == (255, 255, 255)

    Image.new("LA", (32, 32), (0, 128)).save(tmp_path / "la.png")
    value = decode_image(tmp_path / "la.png")[0, 0]
    assert (np.abs(value.astype(int) - 127) <= 1).all()  # half black over white


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.save(tmp_path / "p.png")
    assert tuple(decode_image(tmp_path / "p.png")[5, 5]) == (10, 200, 30)
    image.save(tmp_path / "pt.png", transparency=1)
    assert tuple(decode_image(tmp_path / "pt.png")[5, 5]) == (255, 255, 255)


def test_sixteen_bit_gray_is_scaled(tmp_path):
    values = np.full((32, 32), 65535, np.uint16)
    values[:, :16] = 257 * 100
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")
    out = decode_image(tmp_path / "deep.png")
    assert tuple(out[0, 0]) == (100, 100, 100)
    assert tuple(out[0, 31]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    red = decode_image(tmp_path / "cmyk.jpg")[16, 16].astype(int)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :30] = (255, 0, 0)  # left half red
    stored[:, 30:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    out = decode_image(tmp_path / "turned.jpg")
    assert out.shape == (60, 40, 3)
    assert out[5, 20, 0] > 200 and out[5, 20, 2] < 60  # the left half is now on top
    assert out[55, 20, 2] > 200 and out[55, 20, 0] < 60


def test_gif_gives_the_first_frame(tmp_path):
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(tmp_path / "anim.gif") as check:
        assert check.n_frames == 2
    assert tuple(decode_image(tmp_path / "anim.gif")[10, 10]) == (255, 0, 0)


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")
def test_webp(tmp_path):
    Image.new("RGBA", (40, 40), (0, 200, 0, 255)).save(tmp_path / "a.webp", lossless=True)
    assert tuple(decode_image(tmp_path / "a.webp")[20, 20]) == (0, 200, 0)


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(tmp_path / "empty.jpg") == "empty file"


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n" * 20)
    assert _reason(tmp_path / "notes.png") == "not an image"


def test_truncated_jpeg_and_png(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    for suffix in (".jpg", ".png"):
        Image.fromarray(noise).save(tmp_path / f"full{suffix}")
        data = (tmp_path / f"full{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
        assert _reason(tmp_path / f"cut{suffix}") == "truncated"


def test_too_small(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    assert _reason(tmp_path / "dot.png") == "too small (1x1)"
    Image.new("RGB", (100, 20)).save(tmp_path / "strip.png")
    assert _reason(tmp_path / "strip.png") == "too small (100x20)"
    assert decode_image(tmp_path / "strip.png", min_size=16).shape == (20, 100, 3)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_decompression_bombs(tmp_path):
    # A 100-byte PNG whose header claims 100000 x 100000 pixels.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )
    (tmp_path / "bomb.png").write_bytes(bomb)
    assert _reason(tmp_path / "bomb.png") == "decompression bomb (10000000000 pixels)"
    # Below Pillow's own limit, ours applies: a small image and a low limit.
    Image.new("RGB", (64, 64)).save(tmp_path / "small.png")
    reason = _reason(tmp_path / "small.png", max_pixels=1000)
    assert reason == "decompression bomb (4096 pixels)"
    assert reason_kind(reason) == "decompression bomb"


def test_bad_image_survives_pickling(tmp_path):
    error = BadImage(tmp_path / "x.png", "truncated", "detail")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ValueError)
    assert (copy.reason, copy.kind, str(copy)) == ("truncated", "truncated", str(error))


def test_scan_finds_images_recursively(tmp_path):
    for name in ("b/one.JPG", "a.png", "b/c/two.WebP", "x.gif", "y.bmp", "z.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / ".hidden.png").write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in scan(tmp_path)]
    assert found == ["a.png", "b/c/two.WebP", "b/one.JPG", "x.gif", "y.bmp", "z.jpeg"]
    assert IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
    with pytest.raises(FileNotFoundError, match="missing"):
        scan(tmp_path / "missing")
