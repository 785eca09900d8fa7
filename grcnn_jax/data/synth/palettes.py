"""Text and background colours measured on real word crops, for the generator to paint with.

A real crop's two colours are found on its principal-axis gray (``images.decolorize``):
Otsu's threshold splits the pixels in two, the class that holds most of the crop's border
is the background, the other the text, and each colour is the median RGB of its class. A
crop whose two classes are less than ``MIN_STEP`` grey levels apart (blank, or a split the
threshold could not find) gives no pair.

A palette is float32 [N, 2, 3]: N (text, background) RGB pairs in 0..255, written as a
``.npy`` file (``grcnn-synth --palettes_from DATA --palettes OUT.npy``) and read by
``SynthWords(palettes=PATH)`` (``config.data.synth_palettes``), which paints a share of its
words in a drawn pair (``paint.PALETTE_SHARE``) instead of the colours it invents.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from grcnn_jax.data import images
from grcnn_jax.data.errors import DataError

MIN_STEP = 30.0       # grey levels between the two classes' medians for a usable pair
_MAX_SIDE = 128       # crops are shrunk to at most this many px a side before measuring


def otsu_threshold(gray: np.ndarray) -> int:
    """uint8 [...] -> the threshold t (pixels > t are one class) that maximizes the
    between-class variance of the histogram (Otsu 1979)."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / max(hist.sum(), 1.0)
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    between[~np.isfinite(between)] = -1.0
    return int(np.argmax(between))


def colour_pair(rgb: np.ndarray) -> np.ndarray | None:
    """uint8 [H, W, 3] word crop -> float32 [2, 3] (text RGB, background RGB), or None when
    its two classes are under ``MIN_STEP`` grey levels apart."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or min(rgb.shape[:2]) < 4:
        return None
    h, w = rgb.shape[:2]
    step = max(1, -(-max(h, w) // _MAX_SIDE))
    rgb = rgb[::step, ::step]
    gray = images.decolorize(rgb)
    t = otsu_threshold(gray)
    high = gray > t
    border = np.concatenate([high[0], high[-1], high[:, 0], high[:, -1]])
    bg_is_high = border.mean() >= 0.5
    text, bg = (~high, high) if bg_is_high else (high, ~high)
    if text.sum() < 4 or bg.sum() < 4:
        return None
    if abs(float(np.median(gray[text])) - float(np.median(gray[bg]))) < MIN_STEP:
        return None
    return np.stack([np.median(rgb[text].astype(np.float32), 0),
                     np.median(rgb[bg].astype(np.float32), 0)]).astype(np.float32)


def _rgb(image) -> np.ndarray:
    """Encoded bytes or a uint8 array -> uint8 [H, W, 3] (gray crops repeat their level)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        with Image.open(io.BytesIO(image)) as im:
            return np.asarray(images.upright(im).convert("RGB"))
    a = np.asarray(image)
    return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]


def build_palette(source) -> np.ndarray:
    """A random-access source of records ({"image": encoded bytes or uint8 array}) ->
    float32 [N, 2, 3], one pair per crop that gives one (see ``colour_pair``)."""
    pairs = []
    for i in range(len(source)):
        record = source[i]
        try:
            rgb = _rgb(record["image"])
        except Exception:  # noqa: BLE001 -- an undecodable image gives no colours
            continue
        pair = colour_pair(rgb)
        if pair is not None:
            pairs.append(pair)
    return np.asarray(pairs, np.float32).reshape(-1, 2, 3)


def load_palette(path: str, what: str = "config.data.synth_palettes") -> np.ndarray:
    """A ``.npy`` palette file -> float32 [N, 2, 3]; a missing or malformed file is a
    ``DataError`` naming it (as ``what``, the setting that gave it)."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise DataError(f"{what}={path!r}: no such file (make one with "
                        "grcnn-synth --palettes_from DATA --palettes OUT.npy)")
    try:
        palette = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{what}={path!r}: not a .npy array ({e})") from None
    if palette.ndim != 3 or palette.shape[1:] != (2, 3) or len(palette) == 0:
        raise DataError(f"{what}={path!r}: expected a non-empty "
                        f"[N, 2, 3] array of (text, background) RGB pairs, got shape "
                        f"{palette.shape}")
    if not np.all(np.isfinite(palette)) or palette.min() < 0 or palette.max() > 255:
        raise DataError(f"{what}={path!r}: colours must be in 0..255")
    return palette.astype(np.float32)
