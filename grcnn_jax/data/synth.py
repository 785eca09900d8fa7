"""SynthWords: Synth90k-like word images, rendered on the fly, random-access and deterministic.

Like Jaderberg et al.'s Synth90k, each sample is one word rendered in a random font and
degraded the way scene-text crops are: ~70% English words (``words.load_words``), ~15%
random alphanumeric strings, ~15% numbers; lower, UPPER or Capitalized (strings also
mIxEd). Rendering (Pillow and numpy, in RGB):

  text mask    the word in one of ~100 faces (``fonts.usable_fonts``) at a random size,
               sometimes tracked out or tight, emboldened, outlined or underlined, with
               letters of neighbouring words a space away (cut by a loose crop);
  geometry     stretch, slant, slight rotation and perspective, then a tight (sometimes
               into the letters) or loose crop, all one projective map straight into the
               output (one resampling); sometimes a slight curvature;
  colours      text and background colours: grey, tinted with a luminance step, or two
               colours of similar luminance and different hue (which only a contrast-
               keeping grayscale can tell apart); backgrounds flat, gradient,
               low-frequency noise or texture (stripes, grain, lines, faint stray
               letters) along a colour direction, optionally mixed; drop shadows, 3D
               extrusion, outlines, bevels; uneven light and cast-shadow edges;
  degradation  low resolution (upscaled back), blur or motion blur, per-channel noise,
               JPEG artifacts (with chroma subsampling).

The served image is the colour rendering; the loader turns it to gray like every other
source (``images.to_grayscale``, by ``config.data.grayscale``).

A legibility check measures, from the known text mask, the contrast between text and
background pixels of the finished image (in the principal-axis gray,
``images.decolorize``); a sample that fails is re-rendered (same text)
with the next sub-seed, so essentially no output is illegible.

``src[i]`` is a pure function of ``(seed, i)`` and the installed fonts, numpy and Pillow:
``np.random.default_rng([seed, i, ...])`` drives everything, never global state.

Commands::

    python -m grcnn_jax.data.synth --contact-sheet OUT.png [--n 64] [--seed 0] [--real DIR]
    python -m grcnn_jax.data.synth --benchmark [--n 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import math
import operator
import os
import sys
import time
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from grcnn_jax.charset import Charset
from grcnn_jax.data import fonts as fonts_lib
from grcnn_jax.data import images
from grcnn_jax.data import words as words_lib

MIN_CONTRAST = 40.0       # grey levels between the text's and the background's median
MIN_CONTRAST_NOISE = 2.5  # ... and this many times the background's spread
MAX_ATTEMPTS = 12
_MAX_ASPECT = 10          # W <= 10 * H
_SS_BELOW = 0.75          # supersample the warp when shrinking the rendering by more than this


@functools.lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # Per process. Opening a face costs ~50 us (FreeType maps the file) but each open one
    # holds ~0.25 MB: with ~100 faces x ~60 sizes in play a big cache would cost hundreds
    # of MB per worker for a few per cent of speed, so this one is small.
    return ImageFont.truetype(path, size)


# --- text ------------------------------------------------------------------------------------

def _apply_case(word: str, case: int, rng: np.random.Generator) -> str:
    """0: as is (lowercase), 1: UPPER, 2: Capitalized, 3: rAndOM case."""
    if case == 1:
        out = word.upper()
    elif case == 2:
        out = word[:1].upper() + word[1:]
    elif case == 3:
        flips = rng.random(len(word)) < 0.5
        out = "".join(c.upper() if f else c for c, f in zip(word, flips))
    else:
        return word
    # Case mapping must not change the characters (e.g. German sharp s -> 'SS').
    return out if len(out) == len(word) and out.lower() == word else word


def sample_text(rng: np.random.Generator, words: Sequence[str], alphabet: str,
                max_chars: int) -> str:
    """One text: ~70% a word, ~15% a random alphanumeric string, ~15% a number.

    Args:
      rng: the sample's generator.
      words: lowercase words (may be empty: then strings and numbers only).
      alphabet: the lowercase characters to draw strings from (``words.alphabet``).
      max_chars: the longest text allowed (>= 1).
    Returns:
      The text as it is to be rendered (case variants included), 1..max_chars characters.
    """
    digits = "".join(c for c in alphabet if c.isdigit())
    u = rng.random()
    if u < 0.70 and words:
        word = words[int(rng.integers(len(words)))]
        return _apply_case(word, int(rng.choice(3, p=[0.45, 0.25, 0.30])), rng)
    if u < 0.85 or not digits:
        n = min(max_chars, 1 + int(rng.binomial(11, 0.4)))
        s = "".join(alphabet[j] for j in rng.integers(len(alphabet), size=n))
        return _apply_case(s, int(rng.choice(4, p=[0.4, 0.3, 0.1, 0.2])), rng)
    n = min(max_chars, 1 + int(rng.binomial(7, 0.35)))
    s = [digits[j] for j in rng.integers(len(digits), size=n)]
    if n > 1 and rng.random() < 0.85 and s[0] == "0" and len(digits) > 1:
        s[0] = digits[1 + int(rng.integers(len(digits) - 1))]  # mostly no leading zero
    return "".join(s)


# --- geometry ---------------------------------------------------------------------------------

def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 projective map taking the 4 points ``src`` [4, 2] to ``dst`` [4, 2]."""
    a = np.zeros((8, 8))
    b = dst.reshape(8)
    for k, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * k] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * k + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
    return np.append(np.linalg.solve(a, b), 1.0).reshape(3, 3)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ m.T
    return p[:, :2] / p[:, 2:]


def _warp(mask: Image.Image, fwd: np.ndarray, size: tuple[int, int], ss: int) -> np.ndarray:
    """Resamples ``mask`` through the forward map ``fwd`` into ``size`` (W, H).

    Returns float32 [H, W] in [0, 1].

    ``ss`` > 1 renders ss times larger and box-reduces, to avoid aliasing when shrinking.
    """
    inv = np.linalg.inv(np.diag([ss, ss, 1.0]) @ fwd)
    inv /= inv[2, 2]
    out = mask.transform((size[0] * ss, size[1] * ss), Image.Transform.PERSPECTIVE,
                         tuple(inv.ravel()[:8]), Image.Resampling.BILINEAR)
    if ss > 1:
        out = out.reduce(ss)
    return np.asarray(out, np.float32) * (1 / 255)


# --- backgrounds ------------------------------------------------------------------------------

def _unit(a: np.ndarray) -> np.ndarray:
    """Scales to [-1, 1] around the mean."""
    a = a - a.mean()
    return a / max(float(np.abs(a).max()), 1e-6)


def _pattern(rng: np.random.Generator, h: int, w: int, fonts: Sequence[str]) -> np.ndarray:
    """A background variation within [-1, 1], float32 [h, w]."""
    kind = rng.choice(6, p=[0.25, 0.25, 0.15, 0.15, 0.1, 0.1])
    yy, xx = np.ogrid[0:h, 0:w]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    if kind == 0:    # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        return _unit(xx * math.cos(a) + yy * math.sin(a))
    if kind == 1:    # low-frequency noise ("clouds", stains, uneven light)
        grid = rng.standard_normal((int(rng.integers(2, 5)), int(rng.integers(2, 9))))
        im = Image.fromarray(grid.astype(np.float32), "F").resize((w, h), Image.Resampling.BICUBIC)
        return _unit(np.asarray(im))
    if kind == 2:    # stripes / waves
        a, period = rng.uniform(0, np.pi), rng.uniform(3, 25)
        phase = (xx * math.cos(a) + yy * math.sin(a)) * (2 * np.pi / period) + rng.uniform(0, 7)
        return 0.5 * np.sin(phase).astype(np.float32)  # at stroke frequencies: keep it weaker
    if kind == 3:    # grain: blurred white noise (paper, stone, concrete)
        n = Image.fromarray(np.uint8(rng.integers(0, 256, (h, w))), "L")
        n = n.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 2.0)))
        return _unit(np.asarray(n, np.float32))
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    if kind == 4:    # lines, boxes and edges (signs, shelves, window frames)
        for _ in range(int(rng.integers(1, 5))):
            x0, x1 = rng.uniform(-0.2, 1.2, 2) * w
            y0, y1 = rng.uniform(-0.2, 1.2, 2) * h
            width = int(rng.integers(1, max(2, h // 6)))
            if rng.random() < 0.5:
                d.line([(x0, y0), (x1, y1)], fill=255, width=width)
            else:
                d.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)],
                            outline=255, width=width)
    else:            # stray letters of neighbouring text, cut by the crop
        font = _font(fonts[int(rng.integers(len(fonts)))], int(rng.integers(h // 2, 2 * h)))
        s = "".join(chr(c) for c in rng.integers(97, 123, 12))
        d.text((rng.uniform(-w, w), rng.uniform(-h, h)), s, font=font, fill=255)
    return np.asarray(im, np.float32) * (1 / 255) - 0.5


# --- rendering --------------------------------------------------------------------------------

@dataclasses.dataclass
class Rendering:
    """One rendered sample with what the renderer knows about it.

    Attributes:
      image: uint8 [H, W], the finished image in gray (``images.decolorize`` of ``rgb``):
        what the legibility check measures.
      text: the rendered string.
      text_mask: float32 [H, W] in [0, 1], coverage of the text (incl. underline).
      background: bool [H, W], pixels far from text, outline and shadow.
      font: path of the face used.
      contrast: |median(text pixels) - median(background pixels)|, grey levels.
      noise: the background's spread, (84th - 16th percentile) / 2, grey levels.
      attempt: which sub-seed produced it (0: the first).
      gap: the largest channel difference between the text and background colours as
        chosen, before degradation and conversion to gray (``contrast / gap`` is roughly
        how much of it survived).
      info: some of the choices made (font size, scale, degradations), for inspection.
      rgb: uint8 [H, W, 3], the finished image in colour (what ``SynthWords`` serves).
    """

    image: np.ndarray
    text: str
    text_mask: np.ndarray
    background: np.ndarray
    font: str
    contrast: float
    noise: float
    attempt: int
    gap: float = 255.0
    info: dict = dataclasses.field(default_factory=dict)
    rgb: np.ndarray | None = None

    @property
    def legible(self) -> bool:
        return self.contrast >= max(MIN_CONTRAST, MIN_CONTRAST_NOISE * self.noise)


def _quantiles(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Nearest-rank quantiles of uint8 ``values``, from a histogram (faster than np.percentile)."""
    cdf = np.cumsum(np.bincount(values, minlength=256))
    return np.searchsorted(cdf, np.asarray(qs) * (cdf[-1] - 1) + 1).astype(np.float64)


def _measure(img: np.ndarray, text: np.ndarray, occupied: np.ndarray
             ) -> tuple[float, float, np.ndarray]:
    """(contrast, background spread, background pixels) from the finished image and its masks."""
    core = text >= 0.75
    if np.count_nonzero(core) < 4:
        core = text >= 0.4 * max(float(text.max()), 1e-6)
    bg = occupied < 0.02
    if np.count_nonzero(bg) < 8 or np.count_nonzero(core) < 2:
        return 0.0, 0.0, bg
    b16, b50, b84 = _quantiles(img[bg], (0.16, 0.5, 0.84))
    (t50,) = _quantiles(img[core], (0.5,))
    return abs(t50 - b50), (b84 - b16) / 2, bg


def _neighbour(rng: np.random.Generator, text: str) -> str:
    """A few letters of a neighbouring word, in the case style of ``text``."""
    s = "".join(chr(c) for c in rng.integers(97, 123, int(rng.integers(1, 5))))
    return s.upper() if text.isupper() else s


def _text_mask(rng: np.random.Generator, font: ImageFont.FreeTypeFont, text: str
               ) -> tuple[Image.Image, Image.Image | None, np.ndarray, bool]:
    """The text drawn white on black, a few px larger than the ink.

    Sometimes letters of the neighbouring words stand a space to the left and/or right,
    outside the ink box (a loose crop then shows them cut, as in scene photos).

    Returns:
      (mask "L" image, outline mask or None, the ink box's corners float [4, 2] in mask px,
      whether neighbours were drawn).
    """
    size, pad, grow = font.size, 3, 1
    pre = post = ""
    if rng.random() < 0.2:
        side = rng.integers(1, 4)            # 1: left, 2: right, 3: both
        pre = _neighbour(rng, text) + " " if side & 1 else ""
        post = " " + _neighbour(rng, text) if side & 2 else ""
    full = pre + text + post
    # Letter spacing: mostly the face's own; sometimes tracked out (signs, "H E R E") or tight.
    u = rng.random()
    track = size * (rng.uniform(0.08, 0.6) if u < 0.15 else rng.uniform(-0.06, 0) if u < 0.2
                    else 0.0)
    if track == 0:                   # the face's own spacing and kerning: one line, one box
        pens, boxes = [0.0], [font.getbbox(full, anchor="ls")]
        wx0, _, wx1, _ = font.getbbox(text, anchor="ls")
        shift = font.getlength(pre)          # where the word starts in the full string
        x0, x1 = wx0 + shift, wx1 + shift
    else:                            # each character's pen position and box, drawn one by one
        pens = [font.getlength(full[:j]) + j * track for j in range(len(full))]
        boxes = [font.getbbox(c, anchor="ls") for c in full]
        word = range(len(pre), len(pre) + len(text))
        x0 = min(pens[j] + boxes[j][0] for j in word)
        x1 = max(pens[j] + boxes[j][2] for j in word)
    _, y0, _, y1 = font.getbbox(text, anchor="ls")
    fx0 = min(p + b[0] for p, b in zip(pens, boxes))
    fx1 = max(p + b[2] for p, b in zip(pens, boxes))
    fy0 = min(b[1] for b in boxes)
    fy1 = max(b[3] for b in boxes)
    underline = rng.random() < 0.04
    if underline:
        uy, uw = max(2, round(0.12 * size)), max(1, round(0.06 * size))
        y1 = max(y1, uy + uw)
    ox, oy = pad - min(x0, fx0), pad - min(y0, fy0)      # the origin in the mask
    w = int(math.ceil(max(x1, fx1) - min(x0, fx0))) + 2 * pad
    h = max(y1, fy1) - min(y0, fy0) + 2 * pad
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    if track == 0:
        draw.text((ox, oy), full, font=font, fill=255, anchor="ls")
    else:
        for c, p in zip(full, pens):
            draw.text((ox + p, oy), c, font=font, fill=255, anchor="ls")
    if underline:
        draw.rectangle([ox + x0, oy + uy, ox + x1, oy + uy + uw - 1], fill=255)
    if rng.random() < 0.15:          # faux bold, heavier on large renderings
        mask = mask.filter(ImageFilter.MaxFilter(3 if size < 28 else int(rng.choice([3, 5]))))
    outer = None
    if rng.random() < 0.12:          # outlined letters
        width = int(rng.choice([3, 5]))
        outer = mask.filter(ImageFilter.MaxFilter(width))
        grow = 1 + width // 2
    ix0, ix1, iy0, iy1 = ox + x0 - grow, ox + x1 + grow, oy + y0 - grow, oy + y1 + grow
    ink = np.array([[ix0, iy0], [ix1, iy0], [ix1, iy1], [ix0, iy1]], float)
    return mask, outer, ink, bool(pre or post)


def _crop_map(rng: np.random.Generator, ink: np.ndarray, size: int, height: int,
              margins: np.ndarray) -> tuple[np.ndarray, int, float, float]:
    """The projective map from mask px to output px: distortion, then crop and scale.

    Args:
      ink: the ink box's corners [4, 2] in mask px.
      size: the font size, px (the margins' unit).
      height: the output height, px.
      margins: top, bottom, left, right around the ink, in font sizes.
    Returns:
      (3x3 forward map, output width W, vertical and horizontal scale in output px per
      rendered px).
    """
    H = height
    # Stretch, slant, rotation about the centre, then perhaps perspective.
    sx = math.exp(float(np.clip(rng.normal(0, 0.12), -0.3, 0.3)))
    shear = float(np.clip(rng.normal(0, 0.18), -0.4, 0.4)) if rng.random() < 0.35 else 0.0
    theta = math.radians(float(np.clip(rng.normal(0, 2.5), -7, 7))) if rng.random() < 0.6 else 0.0
    c, s = math.cos(theta), math.sin(theta)
    cx, cy = ink.mean(0)
    fwd = (np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
           @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
           @ np.array([[1, -shear, 0], [0, 1, 0], [0, 0, 1]])
           @ np.array([[sx, 0, 0], [0, 1, 0], [0, 0, 1]])
           @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]]))
    if rng.random() < 0.3:
        dst = _apply(fwd, ink)
        qw, qh = np.ptp(dst, axis=0)
        fwd = _homography(ink, dst + rng.uniform(-1, 1, (4, 2)) * [0.04 * qw, 0.12 * qh])
    # Crop: the distorted ink's bounding box plus the margins, scaled to the output height.
    q = _apply(fwd, ink)
    (cx0, cy0), (cx1, cy1) = q.min(0), q.max(0)
    mt, mb, ml, mr = margins * size
    cx0, cx1, cy0, cy1 = cx0 - ml, cx1 + mr, cy0 - mt, cy1 + mb
    k = H / (cy1 - cy0)
    W = round((cx1 - cx0) * k)
    if W < (H + 1) // 2:             # a narrow word: widen the crop rather than stretch it
        extra = ((H + 1) // 2 / k - (cx1 - cx0)) / 2
        cx0, cx1, W = cx0 - extra, cx1 + extra, (H + 1) // 2
    W = min(W, _MAX_ASPECT * H)      # a very long one: squeeze it
    kx = W / (cx1 - cx0)
    fwd = np.array([[kx, 0, -cx0 * kx], [0, k, -cy0 * k], [0, 0, 1]]) @ fwd
    return fwd, W, k, kx


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(c: np.ndarray) -> float:
    return float(np.asarray(c, np.float32) @ _LUMA)


def _tinted(rng: np.random.Generator, level: float) -> np.ndarray:
    """An RGB colour of luminance ~``level`` with a random hue and saturation."""
    c = level + rng.normal(0, rng.uniform(0, 50), 3)
    c = c + (level - _luma(c))
    return np.clip(c, 0, 255).astype(np.float32)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(text, background) RGB float32 [3]: grey, tinted with a luminance step, or a hue step.

    A hue step (~25%) is two colours of similar luminance, far apart in RGB: red on
    brown, white on pink, blue on purple -- what a luminance conversion nearly erases.
    """
    u = rng.random()
    if u < 0.75:
        while True:
            lo, hi = sorted(rng.uniform(0, 255, 2))
            if hi - lo >= 50:
                break
        t_level, b_level = (lo, hi) if rng.random() < 0.6 else (hi, lo)
        if u < 0.25:
            return np.full(3, t_level, np.float32), np.full(3, b_level, np.float32)
        return _tinted(rng, t_level), _tinted(rng, b_level)
    b = rng.uniform(0, 255, 3).astype(np.float32)
    best, best_d = b, -np.inf
    for _ in range(16):
        t = rng.uniform(0, 255, 3).astype(np.float32)
        d = float(np.linalg.norm(t - b)) - 2 * abs(_luma(t) - _luma(b))
        if d > best_d:
            best, best_d = t, d
    return best, b


def _direction(rng: np.random.Generator) -> np.ndarray:
    """A colour direction for background variation: mostly brightness, some hue."""
    d = np.ones(3, np.float32) + rng.normal(0, rng.uniform(0, 0.8), 3).astype(np.float32)
    return d / max(float(np.abs(d).max()), 1e-3)


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``a`` [H, W] moved by (dx, dy) px, zeros shifted in."""
    H, W = a.shape[:2]
    out = np.zeros_like(a)
    if abs(dx) >= W or abs(dy) >= H:
        return out
    out[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        a[max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return out


def _bend(a: np.ndarray, amount: float) -> np.ndarray:
    """Bends rows of ``a`` [H, W] along a parabola: column x moves down by
    ``amount * H * (2x/W - 1)^2`` px (negative: up), linearly interpolated."""
    H, W = a.shape
    x = np.linspace(-1, 1, W, dtype=np.float32)
    src = np.arange(H, dtype=np.float32)[:, None] - amount * H * x[None, :] ** 2
    y0 = np.floor(src).astype(np.int64)
    f = src - y0
    cols = np.arange(W)[None, :]

    def take(y):
        ok = (y >= 0) & (y < H)
        return np.where(ok, a[np.clip(y, 0, H - 1), cols], 0)

    return (take(y0) * (1 - f) + take(y0 + 1) * f).astype(a.dtype)


def _light(rng: np.random.Generator, H: int, W: int) -> np.ndarray | None:
    """A multiplicative illumination field float32 [H, W] (uneven light, a cast shadow) or None."""
    field = None
    if rng.random() < 0.35:
        if rng.random() < 0.3:       # blotches
            grid = rng.standard_normal((int(rng.integers(2, 4)), int(rng.integers(2, 6))))
            smooth = _unit(np.asarray(Image.fromarray(grid.astype(np.float32), "F")
                                      .resize((W, H), Image.Resampling.BICUBIC)))
        else:                        # a gradient
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
            a = rng.uniform(0, 2 * np.pi)
            smooth = _unit(xx * math.cos(a) + yy * math.sin(a))
        field = 1 + smooth * rng.uniform(0.1, 0.45)
    if rng.random() < 0.08:  # the soft edge of a cast shadow across the word
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        d = (xx - rng.uniform(0, W)) * math.cos(a) + (yy - rng.uniform(0, H)) * math.sin(a)
        edge = 0.5 * (1 + np.tanh(d / rng.uniform(1, 8)))
        shade = 1 - rng.uniform(0.25, 0.6) * edge
        field = shade if field is None else field * shade
    return None if field is None else field.astype(np.float32)


def _compose(rng: np.random.Generator, t_mask: np.ndarray, o_mask: np.ndarray | None,
             fonts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """Paints background, shadow or extrusion, outline, bevel and text, then the light.

    Returns:
      (image float32 [H, W, 3] in RGB levels, coverage of everything but the background
      float32 [H, W], the text-background gap: the largest channel difference of the
      colours as chosen).
    """
    H, W = t_mask.shape
    t_col, b_col = _colours(rng)
    gap = max(float(np.abs(t_col - b_col).max()), 1.0)
    img = np.empty((H, W, 3), np.float32)
    img[:] = b_col
    if rng.random() < 0.8:
        img += (_pattern(rng, H, W, fonts) * (gap * rng.uniform(0.1, 0.6)))[..., None] \
            * _direction(rng)
        if rng.random() < 0.3:
            img += (_pattern(rng, H, W, fonts) * (gap * rng.uniform(0.1, 0.4)))[..., None] \
                * _direction(rng)
    fg = np.broadcast_to(t_col, (H, W, 3))
    if rng.random() < 0.25:          # uneven ink: a gradient across the text
        fg = fg + (_pattern(rng, H, W, fonts) * (gap * rng.uniform(0.05, 0.3)))[..., None] \
            * _direction(rng)

    occupied = t_mask
    src = o_mask if o_mask is not None else t_mask
    u = rng.random()
    if u < 0.14:                     # drop shadow, or (a third of them) a 3D extrusion
        step = rng.choice([-1, 1], 2)
        n = int(rng.integers(1, max(2, H // 12) + 1))
        sh = np.zeros_like(src)
        for j in (range(1, n + 1) if u < 0.05 else (n,)):
            sh = np.maximum(sh, _shift(src, int(step[0] * j), int(step[1] * j)))
        level = b_col + (t_col - b_col) * rng.uniform(0.3, 0.9) if rng.random() < 0.6 \
            else _tinted(rng, rng.uniform(0, 60) if _luma(b_col) > 100 else rng.uniform(180, 255))
        img += (level - img) * sh[..., None]
        occupied = np.maximum(occupied, sh)
    if o_mask is not None:
        level = np.clip(_luma(t_col) + rng.choice([-1, 1]) * rng.uniform(80, 255), 0, 255)
        img += (_tinted(rng, float(level)) - img) * o_mask[..., None]
        occupied = np.maximum(occupied, o_mask)
    img += (fg - img) * t_mask[..., None]
    if rng.random() < 0.07:          # bevel / emboss: light and dark edges inside the strokes
        d = int(rng.integers(1, max(2, H // 16) + 1))
        rim = t_mask - _shift(t_mask, d, d)
        img += (rim * rng.uniform(40, 110))[..., None]
    light = _light(rng, H, W)
    if light is not None:
        img *= light[..., None]
    return img, occupied, gap


_MOTION = {}


def _motion_kernel(angle: int) -> ImageFilter.Kernel:
    """A 5x5 line kernel at 0, 45, 90 or 135 degrees (motion blur)."""
    if angle not in _MOTION:
        k = np.zeros((5, 5))
        for j in range(5):
            k[{0: (2, j), 45: (4 - j, j), 90: (j, 2), 135: (j, j)}[angle]] = 1
        _MOTION[angle] = ImageFilter.Kernel((5, 5), k.ravel().tolist(), scale=5)
    return _MOTION[angle]


def _degrade(rng: np.random.Generator, img: np.ndarray, em: float, k: float,
             info: dict) -> np.ndarray:
    """Low resolution, blur or motion blur, noise, JPEG: float32 [H, W, 3] -> uint8 [H, W, 3].

    ``em`` is the text's scale (output px per em), ``k`` the output px per rendered px: no
    low resolution or blur on a rendering already blown up from a small size, and none
    that would shrink the letters past reading. The choices are recorded in ``info``.
    """
    H, W = img.shape[:2]
    pil = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    u = rng.random()
    if u < 0.2 and k < 1.5 and em / 12 > 1.3:
        f = info["lowres"] = float(rng.uniform(1.3, min(2.6, em / 12)))
        pil = pil.resize((max(1, round(W / f)), max(1, round(H / f))),
                         rng.choice([Image.Resampling.BILINEAR, Image.Resampling.BOX]))
        pil = pil.resize((W, H), rng.choice([Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
                                             Image.Resampling.NEAREST], p=[0.5, 0.35, 0.15]))
    elif u < 0.47 and k < 1.5:
        r = info["blur"] = float(rng.uniform(0.3, max(0.3, min(1.1, em / 25))))
        pil = pil.filter(ImageFilter.GaussianBlur(r))
    elif u < 0.55 and em > 14:
        angle = info["motion"] = int(rng.choice([0, 45, 90, 135], p=[0.55, 0.15, 0.15, 0.15]))
        pil = pil.filter(_motion_kernel(angle))
    if rng.random() < 0.6:
        sigma = info["noise"] = float(rng.uniform(1, 10))
        noise = rng.standard_normal((H, W, 1), np.float32) * sigma
        if rng.random() < 0.5:       # sensor noise differs per channel
            noise = noise + rng.standard_normal((H, W, 3), np.float32) * (sigma * 0.7)
        pil = Image.fromarray(np.clip(np.asarray(pil, np.float32) + noise + 0.5, 0, 255)
                              .astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        buf = io.BytesIO()
        info["jpeg"] = int(rng.integers(20, 95))
        pil.save(buf, "JPEG", quality=info["jpeg"])
        pil = Image.open(buf)
    return np.array(pil.convert("RGB"), np.uint8)


def render(rng: np.random.Generator, text: str, fonts: Sequence[str], height: int) -> Rendering:
    """Renders ``text`` once, all choices drawn from ``rng`` (see module doc).

    Returns:
      A Rendering of height ``height`` and width in [height // 2, 10 * height]; its
      ``attempt`` is 0 and ``legible`` may be False (``SynthWords`` re-renders those).
    """
    H = height
    path = fonts[int(rng.integers(len(fonts)))]
    # Margins around the ink (top, bottom, left, right) in font sizes. Half are tight, the
    # first and last letters touching the edges or cut into a little, as the hand-drawn
    # boxes of real word crops are (a model that saw mostly loose crops drops those letters).
    tight = rng.random() < 0.5
    if tight:
        margins = np.array([rng.uniform(-0.06, 0.05), rng.uniform(-0.06, 0.05),
                            rng.uniform(-0.05, 0.03), rng.uniform(-0.05, 0.03)])
    else:
        margins = rng.uniform(0, 1, 4) * [0.3, 0.3, 0.5, 0.5]
    # Output px per rendered px: mostly about 1; some small sources blown up (blurry).
    k_target = math.exp(rng.uniform(math.log(0.7), math.log(1.5)))
    if rng.random() < 0.15:
        k_target = rng.uniform(1.5, 2.6)
    size = int(np.clip(round(H / (k_target * (0.75 + margins[0] + margins[1]))), 8, 4 * H))

    mask, outer, ink, neighbours = _text_mask(rng, _font(path, size), text)
    if neighbours:                   # show some of them: a space plus a bit
        margins[2:] = np.maximum(margins[2:], rng.uniform(0.15, 0.6, 2))
    fwd, W, k, kx = _crop_map(rng, ink, size, H, margins)
    ss = 2 if min(k, kx) < _SS_BELOW else 1
    t_mask = _warp(mask, fwd, (W, H), ss)
    o_mask = _warp(outer, fwd, (W, H), ss) if outer is not None else None
    if rng.random() < 0.1:           # slight curvature (text on a curved surface or arc)
        amount = float(rng.uniform(-0.08, 0.08))
        t_mask = _bend(t_mask, amount)
        o_mask = _bend(o_mask, amount) if o_mask is not None else None
    img, occupied, gap = _compose(rng, t_mask, o_mask, fonts)
    em = size * min(k, kx)
    info = {"size": size, "k": round(float(k), 2), "em": round(float(em), 1)}
    rgb = _degrade(rng, img, em, k, info)
    out = images.decolorize(rgb)
    contrast, noise, background = _measure(out, t_mask, occupied)
    return Rendering(out, text, t_mask, background, path, contrast, noise, 0, gap, info, rgb)


# --- the source -------------------------------------------------------------------------------

class SynthWords:
    """A random-access source of ``length`` synthetic word images (see module doc).

    ``src[i]`` is ``{"key": "synth-SEED-I", "image": uint8 [height, W, 3] (RGB), "text": str}`` with
    W in [height // 2, 10 * height] following the text; the text is exactly what is drawn,
    case included, 1..max_chars characters, all in the charset once lowercased.

    Args:
      length: the number of samples (any size; nothing is stored).
      seed: selects the sample sequence.
      height: H of every image, px.
      charset: the target charset (default: 0-9a-z); words and strings use its letters
        and digits, fonts must render them in both cases.
      max_chars: the longest text.
      fonts: font paths to draw from (default: ``fonts.usable_fonts(charset.chars)``).
      words: lowercase words to draw from (default: the vendored English list).
    """

    def __init__(self, length: int, seed: int = 0, height: int = 32,
                 charset: Charset | None = None, max_chars: int = 23,
                 fonts: Sequence[str] | None = None, words: Sequence[str] | None = None):
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if height < 8:
            raise ValueError(f"height must be >= 8 px, got {height}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        self.length, self.seed = int(length), int(seed)
        self.height, self.max_chars = int(height), int(max_chars)
        self.charset = charset if charset is not None else Charset()
        self.alphabet = words_lib.alphabet(self.charset.chars)
        if not self.alphabet:
            raise ValueError(f"charset {self.charset.chars!r} has no letters or digits to render")
        # Paths only (cheap to pickle); faces load lazily per process.
        self.fonts = (tuple(fonts) if fonts is not None
                      else fonts_lib.usable_fonts(self.charset.chars))
        if not self.fonts:
            raise ValueError("fonts is empty")
        self._given_words = tuple(words) if words is not None else None
        self._words: tuple[str, ...] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_words"] = None  # reloaded (and cached) in the receiving process
        return state

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (f"SynthWords(length={self.length}, seed={self.seed}, height={self.height}, "
                f"max_chars={self.max_chars}, fonts=<{len(self.fonts)} faces>)")

    @property
    def words(self) -> tuple[str, ...]:
        if self._words is None:
            if self._given_words is None:
                self._words = words_lib.load_words(self.charset.chars, self.max_chars)
            else:
                allowed = set(self.alphabet)
                self._words = tuple(w for w in (x.lower() for x in self._given_words)
                                    if w and set(w) <= allowed and len(w) <= self.max_chars)
        return self._words

    def render(self, i: int) -> Rendering:
        """Sample ``i`` with its masks and measurements (``self[i]`` is built from this)."""
        i = operator.index(i)
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for SynthWords of length {self.length}")
        text = sample_text(np.random.default_rng([self.seed, i, 0]), self.words,
                           self.alphabet, self.max_chars)
        best = None
        for attempt in range(MAX_ATTEMPTS):
            r = render(np.random.default_rng([self.seed, i, 1 + attempt]), text, self.fonts,
                       self.height)
            r.attempt = attempt
            if r.legible:
                return r
            if best is None or r.contrast > best.contrast:
                best = r
        return best

    def __getitem__(self, i: int) -> dict:
        r = self.render(i)
        return {"key": f"synth-{self.seed}-{i}", "image": r.rgb, "text": r.text}


# --- commands ---------------------------------------------------------------------------------

def contact_sheet(src: SynthWords, n: int = 64, cols: int = 8,
                  cell: tuple[int, int] = (200, 50), real: Sequence[dict] = ()) -> Image.Image:
    """A grid of samples 0..n-1, each resized to ``cell`` (W, H) and labelled with its text.

    ``real``: records (``{"image": encoded bytes or array, "text"}``, e.g. from an ICDAR-03
    folder) shown first, one row of real crops above each row of generated ones, to compare.
    """
    plain = [f for f in src.fonts if os.path.basename(f) == "DejaVuSans.ttf"]
    label_font = _font((plain or sorted(src.fonts))[0], 12)
    items = []                         # (PIL image, label) in grid order
    generated = [(Image.fromarray(src[i]["image"]), src[i]["text"]) for i in range(n)]
    if real:
        shown = [(Image.open(io.BytesIO(r["image"])) if isinstance(r["image"], bytes)
                  else Image.fromarray(r["image"]), "real: " + r["text"]) for r in real]
        for row in range(-(-max(len(shown), n) // cols)):
            items += shown[row * cols:(row + 1) * cols] + generated[row * cols:(row + 1) * cols]
    else:
        items = generated
    rows = -(-len(items) // cols)
    cw, ch = cell
    sheet = Image.new("RGB", (cols * (cw + 8) + 8, rows * (ch + 24) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, label) in enumerate(items):
        x, y = 8 + (i % cols) * (cw + 8), 8 + (i // cols) * (ch + 24)
        sheet.paste(im.convert("RGB").resize(cell, Image.Resampling.BILINEAR), (x, y))
        draw.text((x, y + ch + 3), label, font=label_font, fill="black")
    return sheet


def benchmark(src: SynthWords, n: int = 2000) -> float:
    """Images per second of a plain loop over ``src[0..n-1]``, pinned to one core meanwhile."""
    pinned = hasattr(os, "sched_setaffinity")
    if pinned:
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})
    try:
        src[0]  # warm up: word list, first faces
        t = time.perf_counter()
        for i in range(n):
            src[i]
        return n / (time.perf_counter() - t)
    finally:
        if pinned:
            os.sched_setaffinity(0, cores)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grcnn_jax.data.synth",
                                description=__doc__.split("\n")[0])
    p.add_argument("--contact-sheet", metavar="OUT.png", help="write a grid of samples")
    p.add_argument("--real", metavar="DATA", help="with --contact-sheet: rows of real crops from "
                   "this dataset (ICDAR-03 folder, LMDB) above the generated rows")
    p.add_argument("--benchmark", action="store_true", help="print images/s on one core")
    p.add_argument("--n", type=int, default=None, help="samples (sheet: 64, benchmark: 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=32)
    args = p.parse_args(argv)
    if not args.contact_sheet and not args.benchmark:
        p.error("give --contact-sheet OUT.png and/or --benchmark")
    if args.contact_sheet:
        n = args.n or 64
        src = SynthWords(n, seed=args.seed, height=args.height)
        real = ()
        if args.real:
            from grcnn_jax.data.sources import open_source

            data = open_source(args.real, what="--real")
            picks = np.random.default_rng(args.seed).permutation(len(data))[:n]
            real = [data[int(j)] for j in picks]
        contact_sheet(src, n, real=real).save(args.contact_sheet)
        print(f"wrote {n} samples to {args.contact_sheet}")
    if args.benchmark:
        n = args.n or 2000
        src = SynthWords(n, seed=args.seed, height=args.height)
        print(f"{benchmark(src, n):.0f} images/s on one core ({n} images, height {args.height}, "
              f"{len(src.fonts)} fonts)")
    return 0


if __name__ == "__main__":
    from grcnn_jax.runtime import refusals_as_one_line

    with refusals_as_one_line():
        sys.exit(main())
