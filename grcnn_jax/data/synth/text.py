"""SynthWords' text: what is drawn and its mask.

The texts (``sample_text``: words, random strings and numbers, in case variants), the
per-process font cache, and the word drawn white on black in its face (tracking, faux bold,
outline, underline, letters of neighbouring words), with its ink box. See ``synth``.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


@functools.lru_cache(maxsize=64)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
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
                max_chars: int, punctuation: str = "") -> str:
    """One text: ~70% a word, ~15% a random alphanumeric string, ~15% a number; with
    ``punctuation``, about a third of them then punctuated as signs are (``punctuate``).

    Args:
      rng: the sample's generator.
      words: lowercase words (may be empty: then strings and numbers only).
      alphabet: the lowercase characters to draw strings from (``words.alphabet``).
      max_chars: the longest text allowed (>= 1).
      punctuation: the marks the charset has ('' for an alphanumeric charset: then the
        texts, and the random numbers drawn for them, are exactly those without it).
    Returns:
      The text as it is to be rendered (case variants included), 1..max_chars characters.
    """
    text = _plain_text(rng, words, alphabet, max_chars)
    if punctuation and rng.random() < PUNCTUATED:
        text = punctuate(rng, text, words, alphabet, punctuation, max_chars)
    return text


PUNCTUATED = 0.35       # of the texts, with a charset that has punctuation


def punctuate(rng: np.random.Generator, text: str, words: Sequence[str], alphabet: str,
              punctuation: str, max_chars: int) -> str:
    """``text`` with marks as real signs and labels carry them: a trailing full stop, comma,
    '!' or '?'; quotes or brackets around; a possessive; two words hyphenated or joined by
    '&', '/' or '.'; prices, percentages, times, dates, numbers with separators; an e-mail
    or web address; and, rarely, any of the marks among the letters, so that every mark of
    the charset is seen. A result holding a character the charset lacks, or longer than
    ``max_chars``, is not used: ``text`` is returned as it was."""
    digits = "".join(c for c in alphabet if c.isdigit()) or "0123456789"

    def number(lo: int, hi: int) -> str:
        return str(int(rng.integers(lo, hi)))

    def word() -> str:
        w = words[int(rng.integers(len(words)))] if words else text
        return w.upper() if text.isupper() else w

    u = rng.random()
    if u < 0.30:
        out = text + str(rng.choice(list(".....,,!!?:;")))
    elif u < 0.42:
        left, right = [("\"", "\""), ("'", "'"), ("(", ")"), ("[", "]"), ("<", ">"),
                       ("{", "}"), ("*", "*")][int(rng.choice(7, p=[.4, .15, .25, .08, .04,
                                                                   .03, .05]))]
        out = left + text + right
    elif u < 0.50:
        out = text + ("'S" if text.isupper() else "'s")
    elif u < 0.62:
        out = text + str(rng.choice(list("---&/./+_"))) + word()
    elif u < 0.84:
        kind = int(rng.integers(9))
        cents = "".join(digits[int(j)] for j in rng.integers(len(digits), size=2))
        out = [lambda: "$" + number(1, 1000) + ("." + cents if rng.random() < 0.6 else ""),
               lambda: number(1, 100) + "%",
               lambda: number(0, 24) + ":" + number(10, 60),
               lambda: number(1, 13) + "/" + number(1, 32) + ("/" + number(10, 100)
                                                             if rng.random() < 0.5 else ""),
               lambda: number(1, 10) + "," + number(100, 1000),
               lambda: "#" + number(1, 1000),
               lambda: "+" + number(1, 100) + ("-" + number(100, 1000)
                                               if rng.random() < 0.5 else ""),
               lambda: number(1, 1000) + "." + number(0, 100),
               lambda: number(100, 1000) + "-" + number(1000, 10000)][kind]()
    elif u < 0.90:
        tail = str(rng.choice(["com", "org", "net", "co", "uk", "de"]))
        out = (word() + "@" + word() + "." + tail if rng.random() < 0.4
               else ("www." if rng.random() < 0.5 else "") + word() + "." + tail)
    else:
        chars = list(text)
        for _ in range(1 + int(rng.integers(2))):
            chars.insert(int(rng.integers(len(chars) + 1)),
                         punctuation[int(rng.integers(len(punctuation)))])
        out = "".join(chars)
    allowed = set(alphabet) | set(punctuation)
    if len(out) > max_chars or any(c.lower() not in allowed and c not in allowed for c in out):
        return text
    return out


def _plain_text(rng: np.random.Generator, words: Sequence[str], alphabet: str,
                max_chars: int) -> str:
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


def _neighbour(rng: np.random.Generator, text: str) -> str:
    """A few letters of a neighbouring word, in the case style of ``text``."""
    s = "".join(chr(c) for c in rng.integers(97, 123, int(rng.integers(1, 5))))
    return s.upper() if text.isupper() else s


def draw_text_mask(rng: np.random.Generator, font: ImageFont.FreeTypeFont, text: str
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
