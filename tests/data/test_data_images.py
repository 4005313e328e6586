"""Robust decoding: every common mode to 8-bit RGB, EXIF orientation, drafts, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data.images import ImageDecodeError, ResizePolicy, load_resized, load_rgb, resize_for
from tests.data.conftest import make_image


def _pixel(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    assert img.mode == "RGB"
    return tuple(int(v) for v in np.asarray(img)[xy[1], xy[0]])


def test_grayscale_and_bilevel(tmp_path):
    Image.new("L", (4, 3), 77).save(tmp_path / "gray.png")
    Image.new("1", (4, 3), 1).save(tmp_path / "bits.png")
    assert _pixel(load_rgb(tmp_path / "gray.png")) == (77, 77, 77)
    assert _pixel(load_rgb(tmp_path / "bits.png")) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (4, 3), 1)
    palette.putpalette([0, 0, 0, 200, 10, 30] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    assert _pixel(load_rgb(tmp_path / "palette.png")) == (200, 10, 30)
    palette.save(tmp_path / "clear.png", transparency=1)
    assert _pixel(load_rgb(tmp_path / "clear.png")) == (255, 255, 255)
    palette.save(tmp_path / "clear.gif", transparency=1)
    assert _pixel(load_rgb(tmp_path / "clear.gif")) == (255, 255, 255)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 3), (0, 0, 200, 0))
    rgba.putpixel((1, 0), (0, 0, 200, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    rgba.save(tmp_path / "alpha.png")
    img = load_rgb(tmp_path / "alpha.png")
    assert _pixel(img, (0, 0)) == (255, 255, 255)
    assert _pixel(img, (1, 0)) == (0, 0, 200)
    assert _pixel(img, (2, 0)) == pytest.approx((127, 127, 127), abs=1)
    Image.new("LA", (4, 3), (10, 255)).save(tmp_path / "la.png")
    assert _pixel(load_rgb(tmp_path / "la.png")) == (10, 10, 10)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    red = _pixel(load_rgb(tmp_path / "cmyk.jpg"))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    wide = np.full((3, 4), 65535, dtype=np.uint16)
    wide[0, 0] = 257 * 100
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    img = load_rgb(tmp_path / "wide.png")
    assert _pixel(img, (0, 0)) == (100, 100, 100)
    assert _pixel(img, (1, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    img = load_rgb(tmp_path / "rotated.jpg")
    assert img.size == (30, 40)
    assert _pixel(img, (15, 2))[0] > 200 and _pixel(img, (15, 37))[0] < 50  # white moved to top


def test_draft_decodes_large_jpegs_at_a_reduced_scale(tmp_path):
    path = make_image(tmp_path / "big.jpg", size=(2000, 1500))
    assert load_rgb(path).size == (2000, 1500)
    assert load_rgb(path, draft_size=512).size == (1000, 750)  # still >= 512 on the short side
    assert load_rgb(path, draft_size=(512, 384)).size == (1000, 750)
    assert load_rgb(path, draft_size=(1500, 1000)).size == (2000, 1500)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.open(path).save(tmp_path / "portrait.jpg", exif=exif)
    assert load_rgb(tmp_path / "portrait.jpg", draft_size=(700, 900)).size == (750, 1000)


def test_resize_policies(tmp_path):
    path = make_image(tmp_path / "big.jpg", size=(2000, 1500))
    assert load_resized(path, ResizePolicy("short_side", 512)).shape == (512, 683, 3)
    assert load_resized(path, ResizePolicy("fixed", (512, 384))).shape == (384, 512, 3)
    small = make_image(tmp_path / "small.png", size=(100, 60))
    upscaled = load_resized(small, ResizePolicy("none"), min_side=224)
    assert upscaled.shape == (224, 374, 3) and upscaled.dtype == np.uint8
    kept = resize_for(Image.new("RGB", (300, 250)), ResizePolicy("none"), min_side=224)
    assert kept.size == (300, 250)


def test_invalid_policies_are_refused():
    for kind, size in (("fixed", 512), ("short_side", (512, 384)), ("stretch", 1)):
        with pytest.raises(ValueError, match="invalid ResizePolicy"):
            ResizePolicy(kind, size)


def test_truncated_file_names_the_file(tmp_path):
    path = make_image(tmp_path / "full.jpg", size=(256, 256))
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageDecodeError, match=r"truncated\.jpg"):
        load_rgb(broken)
    png = make_image(tmp_path / "full.png", size=(64, 64))
    (tmp_path / "truncated.png").write_bytes(png.read_bytes()[:300])
    with pytest.raises(ImageDecodeError, match=r"truncated\.png"):
        load_rgb(tmp_path / "truncated.png")


def test_not_an_image_and_missing_file(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageDecodeError, match=r"cannot decode image .*notes\.jpg"):
        load_rgb(tmp_path / "notes.jpg")
    with pytest.raises(ImageDecodeError, match=r"image file not found: .*absent\.png"):
        load_rgb(tmp_path / "absent.png")
