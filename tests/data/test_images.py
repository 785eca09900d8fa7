"""Colour and Pillow modes -> the model's 8-bit gray: one function for every command."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers import stored_turned_jpeg

from grcnn_jax.data.images import decolorize, to_grayscale, upright


def word_image(text_rgb, bg_rgb, size=(120, 40)):
    im = Image.new("RGB", size, tuple(bg_rgb))
    ImageDraw.Draw(im).rectangle([30, 10, 90, 30], fill=tuple(text_rgb))   # a "stroke" block
    return np.asarray(im)


def contrast(gray):
    return abs(float(gray[20, 60]) - float(gray[2, 2]))


def encode(im, fmt="PNG", **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_hue_contrast_survives_where_luminance_loses_it():
    # Red on a green of about the same luminance (0.299 R + 0.587 G + 0.114 B).
    rgb = word_image((200, 40, 40), (40, 120, 40))
    luma = to_grayscale(rgb, "luma")
    assert contrast(luma) < 5
    assert contrast(to_grayscale(rgb, "principal")) > 100


def test_grey_images_become_their_level_and_dark_text_stays_dark():
    rgb = word_image((30, 30, 30), (220, 220, 220))
    gray = decolorize(rgb)
    assert abs(int(gray[20, 60]) - 30) <= 1 and abs(int(gray[2, 2]) - 220) <= 1
    light_on_dark = decolorize(word_image((230, 200, 60), (20, 20, 90)))
    assert light_on_dark[20, 60] > light_on_dark[2, 2]


def test_output_range_and_shape():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 77, 3), dtype=np.uint8)
    gray = decolorize(rgb)
    assert gray.shape == (32, 77) and gray.dtype == np.uint8
    extreme = np.zeros((4, 4, 3), np.uint8)
    extreme[:2] = (255, 0, 255)
    assert np.ptp(decolorize(extreme)) >= 254


def test_sixteen_bit_and_float_images_read_like_their_8bit_source():
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (20, 50), dtype=np.uint8)
    want = to_grayscale(encode(Image.fromarray(src)))
    sixteen = Image.fromarray(src.astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    np.testing.assert_allclose(to_grayscale(encode(sixteen)), want, atol=1)
    as_float = Image.fromarray(src.astype(np.float32) / 255.0, "F")
    np.testing.assert_allclose(to_grayscale(encode(as_float, "TIFF")), want, atol=1)


def test_transparent_background_keeps_the_text():
    rgba = np.zeros((30, 60, 4), np.uint8)
    rgba[10:20, 20:40] = (255, 255, 255, 255)           # white text on full transparency
    gray = to_grayscale(encode(Image.fromarray(rgba, "RGBA")))
    assert abs(int(gray[15, 30]) - int(gray[2, 2])) > 200


def test_palette_and_cmyk_match_rgb():
    rgb = word_image((200, 40, 40), (40, 120, 40))
    want = to_grayscale(rgb)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    np.testing.assert_allclose(to_grayscale(encode(pal)), want, atol=2)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    np.testing.assert_allclose(to_grayscale(encode(cmyk, "JPEG", quality=100)).astype(int),
                               want.astype(int), atol=12)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="grayscale mode 'hsv'"):
        to_grayscale(np.zeros((4, 4, 3), np.uint8), "hsv")


def test_32bit_integer_images_scale_by_their_range():
    rng = np.random.default_rng(2)
    src = rng.integers(0, 256, (10, 30), dtype=np.uint8)
    as_int = Image.fromarray(src.astype(np.int32) * 1000, "I")
    got = to_grayscale(encode(as_int, "TIFF")).astype(int)
    want = np.round(src.astype(float) / int(src.max()) * 255).astype(int)
    np.testing.assert_allclose(got, want, atol=1)
    small = Image.fromarray(src.astype(np.int32), "I")          # already 0..255
    np.testing.assert_array_equal(to_grayscale(encode(small, "TIFF")), src)


@pytest.mark.parametrize("tag", [6, 8, 3])
def test_exif_orientation_is_applied_to_encoded_images(tag):
    """A JPEG stored turned, with the EXIF orientation tag that says so, decodes as a viewer
    shows it; the same pixels untagged decode as stored."""
    gray = np.zeros((40, 120), np.uint8)
    gray[8:32, 10:50] = 255                                  # a mark on the left half
    upright_im = Image.fromarray(gray)
    out = to_grayscale(stored_turned_jpeg(upright_im, tag), "luma")
    assert out.shape == (40, 120)
    assert out[:, :60].mean() > out[:, 60:].mean() + 100
    untagged = stored_turned_jpeg(upright_im, None)
    assert to_grayscale(untagged, "luma").shape == (120, 40)
    with Image.open(io.BytesIO(untagged)) as im:
        assert upright(im) is im
