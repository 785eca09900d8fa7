"""Any image the loader meets -> the model's 8-bit grayscale, one definition for every command.

Training, evaluation, recognition and the synthetic generator all go through
``to_grayscale``, so a word photographed in colour and a word rendered in colour
reach the network the same way.

Colour to gray (``mode``):

  principal  the projection of each pixel's RGB on the first principal axis of the
             image's colours (``decolorize``). Red text on a red-brown wall or white
             on pink differ mostly in hue; the luminance conversion maps both to
             nearly one grey, the principal axis keeps the difference. For grey
             images the axis is (1, 1, 1) and this is the channel mean.
  luma       ITU-R 601 luminance, Pillow's ``convert("L")``.

Encoded images are turned as their EXIF orientation says, as an image viewer shows them.

Pillow modes: 16-bit and 32-bit integer and float images are scaled to 0..255 (16-bit
by 1/257, others by their own range when it exceeds 255); palette, alpha and CMYK
images are converted to RGB first, transparent pixels put on white or black, whichever
leaves the more contrast.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import ExifTags, Image, ImageOps

GRAY_MODES = ("principal", "luma")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_COV_PIXELS = 4096   # the axis is estimated on at most this many pixels (strided sample)


def decolorize(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float [H, W, 3] in 0..255 -> uint8 [H, W]: projection on the principal colour axis.

    The axis ``a`` is the covariance's leading eigenvector, signed so that it agrees with
    luminance (dark text stays dark) and scaled to ``sum(|a|) = 1``: a colour step of
    at most 255 per channel stays at most 255 grey levels and the result fits 0..255
    exactly (offset by ``-255 * sum(min(a, 0))``).
    """
    x = np.asarray(rgb, np.float32).reshape(-1, 3)
    step = max(1, x.shape[0] // _COV_PIXELS)
    sample = x[::step]
    centred = sample - sample.mean(0)
    cov = centred.T @ centred
    _, vecs = np.linalg.eigh(cov)
    axis = vecs[:, -1]
    if float(axis @ _LUMA) < 0:
        axis = -axis
    total = float(np.abs(axis).sum())
    if total < 1e-6:   # cannot happen for a unit vector; keeps the division safe
        axis, total = np.ones(3, np.float32), 3.0
    axis = axis / total
    gray = x @ axis - 255.0 * float(np.minimum(axis, 0).sum())
    return np.clip(gray + 0.5, 0, 255).astype(np.uint8).reshape(np.shape(rgb)[:2])


def _scale_to_8bit(a: np.ndarray, full: float | None) -> np.ndarray:
    """Integer or float levels -> uint8: divided by ``full`` / 255; ``full`` None: float
    images in [0, 1] are fractions, anything above 255 is scaled by its own maximum."""
    if full is None:
        hi = float(a.max()) if a.size else 0.0
        if a.dtype.kind == "f" and hi <= 1.0 and float(a.min()) >= 0:
            full = 1.0
        else:
            full = max(hi, 255.0)
    return np.clip(a.astype(np.float64) * (255.0 / full) + 0.5, 0, 255).astype(np.uint8)


def _flatten_alpha(im: Image.Image) -> np.ndarray:
    """RGBA/LA/transparent palette -> float32 [H, W, 3] over white or black, the more contrasted."""
    rgba = np.asarray(im.convert("RGBA"), np.float32)
    alpha = rgba[..., 3:] / 255.0
    best, best_spread = None, -1.0
    for bg in (255.0, 0.0):
        rgb = rgba[..., :3] * alpha + bg * (1 - alpha)
        spread = float(rgb.std())
        if spread > best_spread:
            best, best_spread = rgb, spread
    return best


def pil_to_grayscale(im: Image.Image, mode: str = "principal") -> np.ndarray:
    """A Pillow image of any mode -> uint8 [H, W] (see module doc)."""
    if mode not in GRAY_MODES:
        raise ValueError(f"grayscale mode {mode!r}: choose one of {GRAY_MODES}")
    m = im.mode
    if m == "L":
        return np.asarray(im)
    if m == "1":
        return np.asarray(im.convert("L"))
    if m.startswith("I;16"):
        return _scale_to_8bit(np.asarray(im), 65535.0)
    if m in ("I", "F"):
        return _scale_to_8bit(np.asarray(im), None)
    if m in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgb = _flatten_alpha(im)
    else:
        rgb = np.asarray(im.convert("RGB"))
    return rgb_to_grayscale(rgb, mode)


def rgb_to_grayscale(rgb: np.ndarray, mode: str = "principal") -> np.ndarray:
    """uint8 or float [H, W, 3] -> uint8 [H, W] by ``mode`` (see module doc)."""
    if mode == "luma":
        return np.clip(np.asarray(rgb, np.float32) @ _LUMA + 0.5, 0, 255).astype(np.uint8)
    return decolorize(rgb)


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation tag says (a phone photo held sideways), as a
    viewer shows it; ``im`` itself when the tag is absent or says 'as stored'."""
    if im.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return im
    return ImageOps.exif_transpose(im)


def to_grayscale(image: bytes | np.ndarray, mode: str = "principal") -> np.ndarray:
    """Encoded bytes (any Pillow format; turned upright by their EXIF orientation) or a
    uint8 [H,W] / [H,W,1|3|4] array -> uint8 [H, W]."""
    if mode not in GRAY_MODES:
        raise ValueError(f"grayscale mode {mode!r}: choose one of {GRAY_MODES}")
    if isinstance(image, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(image)) as im:
            im.load()
            return pil_to_grayscale(upright(im), mode)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 4:
        return pil_to_grayscale(Image.fromarray(array.astype(np.uint8), "RGBA"), mode)
    if array.ndim == 3 and array.shape[-1] == 3:
        return rgb_to_grayscale(array, mode)
    if array.ndim != 2:
        raise ValueError(f"image array of shape {array.shape} is not [H, W] or [H, W, C]")
    return array.astype(np.uint8, copy=False)
