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
               keeping grayscale can tell apart), or with a palette (``synth.palettes``)
               for half the words a pair measured on real crops; backgrounds flat, gradient,
               low-frequency noise or texture (stripes, grain, lines, faint stray
               letters) along a colour direction, optionally mixed; drop shadows, 3D
               extrusion, outlines, bevels; uneven light and cast-shadow edges;
  styles       optionally (``synth.styles``) a few words written in dots, as LED
               displays do, or in relief, in the surface's own colour;
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

The stages live in sibling modules: ``synth_text`` (texts, fonts, the text mask),
``synth_geometry`` (the projective map and crop) and ``synth_paint`` (colours,
backgrounds, effects, light, degradation); ``render`` here runs them in order.

Commands::

    grcnn-synth --contact_sheet OUT.png [--n 64] [--seed 0] [--real DIR]
        [--charset cased]
    grcnn-synth --benchmark [--n 2000]
"""

from __future__ import annotations

import dataclasses
import io
import math
import operator
import os
import time
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from grcnn_jax.text.charset import Charset
from grcnn_jax.data.synth import fonts as fonts_lib
from grcnn_jax.data import images
from grcnn_jax.data.synth import words as words_lib
from grcnn_jax.data.synth.geometry import bend_rows, crop_map, least_scale, warp_mask
from grcnn_jax.data.synth.paint import compose, degrade
from grcnn_jax.data.synth.palettes import load_palette
from grcnn_jax.data.synth import styles as styles_lib
from grcnn_jax.data.synth.text import load_font, draw_text_mask, sample_text

MIN_CONTRAST = 40.0       # grey levels between the text's and the background's median
MIN_CONTRAST_NOISE = 2.5  # ... and this many times the background's spread
MAX_ATTEMPTS = 12
_SS_BELOW = 0.75          # supersample the warp when shrinking the rendering by more than this


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


def render(rng: np.random.Generator, text: str, fonts: Sequence[str], height: int,
           palette: np.ndarray | None = None, styles: tuple[str, ...] = ()) -> Rendering:
    """Renders ``text`` once, all choices drawn from ``rng`` (see module doc); ``palette``:
    float32 [N, 2, 3] (text, background) colour pairs to paint some words in, or None;
    ``styles``: optional lettering styles (``synth.styles``) some words are drawn in.

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

    mask, outer, ink, neighbours = draw_text_mask(rng, load_font(path, size), text)
    style = styles_lib.choose(rng, styles)
    if style:                        # dots and relief carry no outline
        outer = None
    if neighbours:                   # show some of them: a space plus a bit
        margins[2:] = np.maximum(margins[2:], rng.uniform(0.15, 0.6, 2))
    fwd, W, k, kx = crop_map(rng, ink, size, H, margins)
    if "dots" in style:
        # Dots at least MIN_DOT_PITCH output px apart, as the map scales the word (finer grids
        # blur into plain strokes); the ink box's corners and centre bound its scale.
        scale = least_scale(fwd, np.vstack([ink, ink.mean(0)]))
        mask = styles_lib.dot_matrix(rng, mask, size,
                                     min_pitch=max(2.0, styles_lib.MIN_DOT_PITCH / scale))
    ss = 2 if min(k, kx) < _SS_BELOW else 1
    t_mask = warp_mask(mask, fwd, (W, H), ss)
    o_mask = warp_mask(outer, fwd, (W, H), ss) if outer is not None else None
    if rng.random() < 0.1:           # slight curvature (text on a curved surface or arc)
        amount = float(rng.uniform(-0.08, 0.08))
        t_mask = bend_rows(t_mask, amount)
        o_mask = bend_rows(o_mask, amount) if o_mask is not None else None
    img, occupied, gap, visible = compose(rng, t_mask, o_mask, fonts, palette,
                                          relief="relief" in style)
    em = size * min(k, kx)
    info = {"size": size, "k": round(float(k), 2), "em": round(float(em), 1)}
    if style:
        info["style"] = ",".join(sorted(style))
    rgb = degrade(rng, img, em, k, info)
    out = images.decolorize(rgb)
    contrast, noise, background = _measure(out, visible, occupied)
    return Rendering(out, text, t_mask, background, path, contrast, noise, 0, gap, info, rgb)


# --- the source -------------------------------------------------------------------------------

class SynthWords:
    """A random-access source of ``length`` synthetic word images (see module doc).

    ``src[i]`` is ``{"key": "synth-SEED-I", "image": uint8 [height, W, 3] (RGB), "text": str}`` with
    W in [height // 2, 10 * height] following the text; the text is exactly what is drawn,
    case included, 1..max_chars characters, all in the charset once lowercased; with a
    charset that has punctuation, a third of the texts carry some (``synth_text.punctuate``).

    Args:
      length: the number of samples (any size; nothing is stored).
      seed: selects the sample sequence.
      height: H of every image, px.
      charset: the target charset (default: 0-9a-z); words and strings use its letters
        and digits, fonts must render them in both cases.
      max_chars: the longest text.
      fonts: font paths to draw from (default: ``fonts.usable_fonts(charset.chars)``).
      words: lowercase words to draw from (default: the vendored English list).
      palettes: a ``.npy`` file of (text, background) colour pairs measured on real crops
        (``synth.palettes``): half the words are painted in one of them. None: the
        generator's own colours only.
      palettes_setting: how errors about ``palettes`` name the setting that gave it.
      styles: optional lettering styles (``synth.styles``: 'dots', 'relief'), as a
        comma-separated string or a sequence; each is given to a few per cent of the
        words. None or '': none (the samples are those the generator gave without them).
    """

    def __init__(self, length: int, seed: int = 0, height: int = 32,
                 charset: Charset | None = None, max_chars: int = 23,
                 fonts: Sequence[str] | None = None, words: Sequence[str] | None = None,
                 palettes: str | None = None,
                 palettes_setting: str = "config.data.synth_palettes",
                 styles: str | Sequence[str] | None = None):
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
        self.punctuation = "".join(c for c in self.charset.chars
                                   if not c.isalnum() and not c.isspace())
        if not self.alphabet:
            raise ValueError(f"charset {self.charset.chars!r} has no letters or digits to render")
        # Paths only (cheap to pickle); faces load lazily per process.
        self.fonts = (tuple(fonts) if fonts is not None
                      else fonts_lib.usable_fonts(self.charset.chars))
        if not self.fonts:
            raise ValueError("fonts is empty")
        self._given_words = tuple(words) if words is not None else None
        self._words: tuple[str, ...] | None = None
        # The path travels to worker processes; the array is loaded (and checked) now and
        # again in each process that renders.
        self.palettes = palettes or None
        self.palettes_setting = palettes_setting
        self._palette = load_palette(self.palettes, self.palettes_setting) if self.palettes else None
        self.styles = styles_lib.parse_styles(styles)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_words"] = None  # reloaded (and cached) in the receiving process
        state["_palette"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.palettes:
            self._palette = load_palette(self.palettes, self.palettes_setting)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (f"SynthWords(length={self.length}, seed={self.seed}, height={self.height}, "
                f"max_chars={self.max_chars}, fonts=<{len(self.fonts)} faces>"
                + (f", palettes={self.palettes!r}" if self.palettes else "")
                + (f", styles={','.join(self.styles)!r}" if self.styles else "") + ")")

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
                           self.alphabet, self.max_chars, self.punctuation)
        best = None
        for attempt in range(MAX_ATTEMPTS):
            r = render(np.random.default_rng([self.seed, i, 1 + attempt]), text, self.fonts,
                       self.height, self._palette, self.styles)
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
    label_font = load_font((plain or sorted(src.fonts))[0], 12)
    items = []                         # (PIL image, label) in grid order
    generated = [(Image.fromarray(src[i]["image"]), src[i]["text"]) for i in range(n)]
    if real:
        shown = [(Image.open(io.BytesIO(r["image"])) if isinstance(r["image"], bytes)
                  else Image.fromarray(r["image"]), "real: " + r["text"]) for r in real]
        for row in range(-(-max(len(shown), n) // cols)):
            items += shown[row * cols:(row + 1) * cols] + generated[row * cols:(row + 1) * cols]
    else:
        items = generated
    return labelled_grid(items, cols, cell, label_font)


def labelled_grid(items: Sequence[tuple[Image.Image, str]], cols: int = 8,
                  cell: tuple[int, int] = (200, 50), font=None) -> Image.Image:
    """(image, label) pairs in a grid, row by row, each image resized to ``cell`` (W, H)
    with its label beneath (in ``font``, Pillow's default if None)."""
    rows = -(-len(items) // cols)
    cw, ch = cell
    sheet = Image.new("RGB", (cols * (cw + 8) + 8, rows * (ch + 24) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, label) in enumerate(items):
        x, y = 8 + (i % cols) * (cw + 8), 8 + (i // cols) * (ch + 24)
        sheet.paste(im.convert("RGB").resize(cell, Image.Resampling.BILINEAR), (x, y))
        draw.text((x, y + ch + 3), label, font=font, fill="black")
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
