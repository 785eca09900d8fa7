"""Optional lettering styles of ``SynthWords``: dot-matrix and relief.

Two kinds of real signs that letters of a font painted in a flat colour do not show, both
among the real crops the shipped reader misreads:

  dots    letters made of separate round or square dots on a grid, as LED and dot-matrix
          displays write them (``dot_matrix``, applied to the text mask);
  relief  letters raised from or cut into the surface itself, nearly the background's
          colour, seen by the light and dark edges their relief catches (``paint.compose``
          with ``relief=True``: the legibility check then measures those edges).

``SynthWords(styles="dots,relief")`` (``config.data.synth_styles``) gives each style to a
share of the words (``SHARES``). Without styles the generator draws nothing for them, so its
samples are exactly those it gave before styles existed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

STYLES = ("dots", "relief")
SHARES = {"dots": 0.04, "relief": 0.04}   # of the words, each style on its own
MIN_DOT_PITCH = 3.0                        # output px between dot centres, at the least


def parse_styles(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``'dots,relief'`` (or a sequence of names; '' or None for none) -> the named styles
    in ``STYLES`` order. Raises ValueError naming an unknown style."""
    names = spec.split(",") if isinstance(spec, str) else list(spec or ())
    names = {n.strip() for n in names if n.strip()}
    unknown = sorted(names - set(STYLES))
    if unknown:
        raise ValueError(f"unknown generator style {unknown[0]!r} (known: {', '.join(STYLES)})")
    return tuple(s for s in STYLES if s in names)


def choose(rng: np.random.Generator, styles: tuple[str, ...]) -> set[str]:
    """The styles one word is drawn in: each of ``styles`` with its share. Draws from
    ``rng`` only for the styles given (none: the random stream is untouched)."""
    return {s for s in styles if rng.random() < SHARES[s]}


def dot_matrix(rng: np.random.Generator, mask: Image.Image, size: int,
               min_pitch: float = 2.0) -> Image.Image:
    """The text mask ("L", text white on black, drawn at font ``size`` px) redrawn as dots.

    A square grid of pitch 7-12% of the font size (at least ``min_pitch`` px, so that the
    dots stay apart once the word is scaled to its output size) is laid over the mask;
    each cell the text covers by more than a drawn fraction (15-30%) lights one dot at its
    centre, round (two thirds) or square, of radius 30-45% of the pitch. Returns a new
    mask of the same size.
    """
    a = np.asarray(mask, np.float32) / 255.0
    h, w = a.shape
    pitch = max(min_pitch, size * rng.uniform(0.07, 0.12))
    ys = np.unique(np.minimum(np.round(np.arange(0, h, pitch)).astype(int), h - 1))
    xs = np.unique(np.minimum(np.round(np.arange(0, w, pitch)).astype(int), w - 1))
    cover = np.add.reduceat(np.add.reduceat(a, ys, axis=0), xs, axis=1)
    cover /= np.outer(np.diff(np.append(ys, h)), np.diff(np.append(xs, w)))
    lit = cover > rng.uniform(0.15, 0.3)
    r = pitch * rng.uniform(0.30, 0.45)
    square = rng.random() < 1 / 3
    out = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(out)
    shape = draw.rectangle if square else draw.ellipse
    for i, j in zip(*np.nonzero(lit)):
        cy, cx = ys[i] + pitch / 2, xs[j] + pitch / 2
        shape([cx - r, cy - r, cx + r, cy + r], fill=255)
    return out
