"""Record -> example: the label policy, label adaptation, resizing, augmentation, and the
per-record ``Preprocess`` the loader (``data/pipeline.py``) maps over a source.

An example is a dict ``image`` uint8 [H, W], ``labels`` int32 [L] (charset ids, 0 beyond the
text), ``length``, ``key``, ``text``, ``lexicon`` (and ``turned``, see ``turned_views``, where
the ``Preprocess`` turns; ``source``, see ``source_image``, where it keeps sources for
unbending); a record the policy skips becomes a ``Problem`` (its key and why),
counted by the loader, never a crash.
"""

from __future__ import annotations

import dataclasses
import unicodedata

import numpy as np
from PIL import Image, ImageFilter

from grcnn_jax.text.charset import Charset
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.images import GRAY_MODES, to_grayscale
from grcnn_jax.text.ctc_host import required_frames


POLICIES = {
    "bad_image": ("skip", "fail"),
    "empty_label": ("skip", "fail"),
    "unknown_chars": ("lower", "skip", "fail"),   # lower: lowercase, then skip what is still unknown
    "too_long": ("skip", "fail"),
    "missing_record": ("skip", "fail"),           # an index the source lists but cannot find
}
DEFAULT_POLICY = {"bad_image": "skip", "empty_label": "skip", "unknown_chars": "lower",
                  "too_long": "skip", "missing_record": "skip"}


def check_policy(policy: dict[str, str]) -> dict[str, str]:
    """Validates a ``{case: action}`` policy, filling defaults; DataError names a bad entry."""
    unknown = set(policy) - set(POLICIES)
    if unknown:
        raise DataError(f"unknown data policy case(s) {sorted(unknown)}; known: {sorted(POLICIES)}")
    full = {**DEFAULT_POLICY, **policy}
    for case, action in full.items():
        if action not in POLICIES[case]:
            raise DataError(f"data policy {case}={action!r}: choose one of {POLICIES[case]}")
    return full


def adapt_label(text: str, charset: Charset, keep_case: bool = False) -> str:
    """``text`` with what a model of ``charset`` cannot write taken out, never rejected.

    As PARSeq's ``CharsetAdapter`` (with its unicode normalization) does to benchmark
    labels: lowercase first if the charset has no uppercase letters (uppercase if it has
    no lowercase ones); a character still outside the charset is replaced by the
    characters of its compatibility decomposition that are in it (NFKD: 'é' -> 'e',
    'ﬁ' -> 'fi'), and removed if there are none (spaces, punctuation for the
    alphanumeric charsets). ``'Café!'`` -> ``'cafe'`` for the default charset.

    keep_case: keep the label's own case: a letter stays if the charset has it in either
      case (``evaluate --benchmark --case_sensitive`` compares true case).
    """
    chars = charset.chars
    if chars == chars.lower():
        fold = str.lower
    elif chars == chars.upper():
        fold = str.upper
    else:
        def fold(c: str) -> str:
            return c

    def kept(c: str) -> str:
        if fold(c) in charset or (keep_case and c in charset):
            return c if keep_case else fold(c)
        return ""

    out = []
    for c in text:
        k = kept(c)
        if not k and not c.isspace():
            k = "".join(kept(d) for d in unicodedata.normalize("NFKD", c) if d != c)
        out.append(k)
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class Problem:
    """A record that the policy says to skip: its key and why."""

    key: str
    reason: str


def resize(gray: np.ndarray, height: int, width: int, keep_aspect: bool) -> np.ndarray:
    """uint8 [h, w] -> uint8 [height, width]: stretched, or scaled to ``height`` and right-padded.

    Padding repeats the last column (no artificial edge for the network to read).
    """
    h, w = gray.shape
    if h == 0 or w == 0:
        raise ValueError(f"empty image of shape {gray.shape}")
    if not keep_aspect:
        if (h, w) == (height, width):
            return gray
        return np.asarray(Image.fromarray(gray).resize((width, height), Image.BILINEAR))
    new_w = max(1, min(width, round(w * height / h)))
    scaled = np.asarray(Image.fromarray(gray).resize((new_w, height), Image.BILINEAR))
    if new_w == width:
        return scaled
    return np.pad(scaled, ((0, 0), (0, width - new_w)), mode="edge")


def _perspective_coefficients(dst: np.ndarray, src: np.ndarray) -> tuple[float, ...]:
    """PIL's 8 PERSPECTIVE coefficients mapping output points ``dst`` [4, 2] to input
    points ``src`` [4, 2] (x, y in px)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return tuple(np.linalg.solve(np.asarray(rows, np.float64), np.asarray(rhs, np.float64)))


def distort(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """uint8 [H, W] -> the same size, seen at another angle: rotated (up to ~6 degrees in
    the image's own pixels), sheared (up to +-0.35), with each corner moved (perspective,
    up to 5% of the width and 15% of the height), sometimes bent along a parabola (curved
    baselines). Edges are repeated, never filled black. ``strength`` scales those bounds and
    the shear's and curve's chances (``augment``'s)."""
    h, w = img.shape
    py, px = h // 2, w // 4
    padded = np.pad(img, ((py, py), (px, px)), mode="edge")
    cx, cy = px + w / 2, py + h / 2
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    a = np.deg2rad(rng.uniform(-6, 6) * strength)
    shear = rng.uniform(-0.35, 0.35) * strength if rng.random() < 0.5 * strength else 0.0
    rel = corners - [w / 2, h / 2]
    rel = rel @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    rel[:, 0] += shear * rel[:, 1]
    rel += rng.uniform(-1, 1, (4, 2)) * [0.05 * w * strength, 0.15 * h * strength]
    src = rel + [cx, cy]
    out = Image.fromarray(padded).transform(
        (w, h), Image.Transform.PERSPECTIVE, _perspective_coefficients(corners, src),
        Image.Resampling.BILINEAR)
    out = np.asarray(out)
    if rng.random() < 0.3 * strength:            # curved baseline: column x moves by dy(x)
        amount = rng.uniform(-0.25, 0.25) * h * strength
        dy = amount * np.linspace(-1, 1, w) ** 2
        ys = np.clip(np.arange(h)[:, None] - dy[None, :], 0, h - 1)
        y0 = np.floor(ys).astype(np.int64)
        y1, f = np.minimum(y0 + 1, h - 1), ys - y0
        cols = np.arange(w)[None, :]
        out = (out[y0, cols] * (1 - f) + out[y1, cols] * f + 0.5).astype(np.uint8)
    return out


# Of the training images ``augment`` varies, this share is bent along an arc (``bend_arc``)
# through an angle of this many radians, either way (curved words: CUTE80's kind).
ARC_PROBABILITY = 0.15
ARC_ANGLES = (0.3, 2.2)


def _bilinear(a: np.ndarray, x0: np.ndarray, y0: np.ndarray, fx: np.ndarray,
              fy: np.ndarray) -> np.ndarray:
    """float32 [h, w(, C)] sampled at (y0 + fy, x0 + fx) (integer corners, fractions in
    [0, 1]) by bilinear interpolation, the edge pixels repeated outside."""
    h, w = a.shape[:2]

    def at(y, x):
        return a[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]

    return ((at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx) * (1 - fy)
            + (at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx) * fy)


def bend_arc(img: np.ndarray, angle: float) -> np.ndarray:
    """uint8 [h, w] or [h, w, C] -> the word written along a circular arc, as a new crop
    (its bounding box: taller, often narrower), each column turned to face the circle's
    centre, as on a round sign or a bottle.

    The image's middle row becomes an arc of length w subtending ``angle`` radians:
    positive, the circle lies below (the ends droop); negative, above (the ends rise).
    Where the arc leaves no source pixel the crop holds the median of the image's border
    (its background, mostly). ``angle`` 0 returns ``img``. Bilinear.
    """
    if angle == 0:
        return img
    if angle < 0:          # the circle above: bend the upside-down word, turn it back
        return bend_arc(img[::-1], -angle)[::-1]
    h, w = img.shape[:2]
    radius = w / angle     # of the middle row, px
    outer = radius + h / 2
    # The crop: the arc's bounding box, in px with the circle's centre at (0, 0), y up.
    half = min(angle / 2, np.pi)
    x_max = outer * np.sin(min(half, np.pi / 2))
    y_top = outer
    y_bottom = min((radius - h / 2) * np.cos(half), outer * np.cos(half))
    width = max(1, int(np.ceil(2 * x_max)))
    height = max(1, int(np.ceil(y_top - y_bottom)))
    xs = (np.arange(width) + 0.5 - width / 2)[None, :]
    ys = (y_top - (np.arange(height) + 0.5))[:, None]
    r = np.hypot(xs, ys)
    src_x = w / 2 + np.arctan2(xs, ys) * radius - 0.5
    src_y = h / 2 - (r - radius) - 0.5
    inside = (src_x > -1) & (src_x < w) & (src_y > -1) & (src_y < h)
    x0, y0 = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    fx, fy = src_x - x0, src_y - y0
    if img.ndim == 3:
        fx, fy, inside = fx[..., None], fy[..., None], inside[..., None]
    a = img.astype(np.float32)
    out = _bilinear(a, x0, y0, fx, fy)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    out = np.where(inside, out, np.median(border, axis=0))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def unbend_arc(img: np.ndarray, angle: float) -> np.ndarray | None:
    """uint8 [h, w] holding a word written along a circular arc of ``angle`` radians (its
    sign as ``bend_arc``'s: positive, the circle below) -> uint8 [h', w'], the word written
    straight again, or None where no such arc fits the crop (too small a height for it).

    The arc is fitted to the crop as ``bend_arc`` makes it: its outer edge spans the crop's
    width and touches its top, its inner edge's ends touch the bottom; so a crop that
    ``bend_arc(word, angle)`` made comes back as the word (resampled). Each output column is
    sampled along the circle's radius, so letters turned to face the centre stand upright.
    Bilinear; outside the crop, the edge pixels are repeated.
    """
    if angle == 0:
        return img
    if angle < 0:
        out = unbend_arc(img[::-1], -angle)
        return None if out is None else out[::-1]
    h, w = img.shape[:2]
    half = min(angle / 2, np.pi / 2)
    outer = w / (2 * np.sin(half))                        # px, the arc's outer radius
    band = (h - outer * (1 - np.cos(half))) / np.cos(half)    # the word's height, px
    if band < UNBEND_LEAST_BAND * h:
        return None
    radius = outer - band / 2                             # the word's middle row
    length = radius * angle                               # its length, px
    out_w, out_h = max(1, round(length)), max(1, round(band))
    phi = ((np.arange(out_w) + 0.5) / out_w - 0.5)[None, :] * angle
    r = radius + band / 2 - ((np.arange(out_h) + 0.5) / out_h)[:, None] * band
    src_x = np.clip(w / 2 + r * np.sin(phi) - 0.5, 0, w - 1)
    src_y = np.clip(outer - r * np.cos(phi) - 0.5, 0, h - 1)
    x0, y0 = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    out = _bilinear(img.astype(np.float32), x0, y0, src_x - x0, src_y - y0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# A reading still unsure after framing (``UNSURE``) may be of a word written along an arc (a
# round sign, a bottle, a logo): readers also read the crop unbent along these arcs (radians,
# each way: ``unbent_views``; an arc that does not fit a crop is left out) and keep an unbent
# view's reading where ``ctc_host.kept_unbent`` says. Chosen on real_val and its bent copies
# (the third arc on a copy bent 2-3 rad), docs/accuracy.md.
UNBEND_ANGLES = (0.6, -0.6, 1.4, -1.4, 2.2, -2.2)
UNBEND_LEAST_BAND = 0.25        # an arc that leaves the word less of the crop's height: none
SOURCE_HEIGHT = 96              # px: the crop kept for unbending (``source_image``) at most


def source_image(gray: np.ndarray) -> np.ndarray:
    """uint8 [h, w] -> the crop kept for ``unbent_views``: itself, or scaled to
    ``SOURCE_HEIGHT`` px high (aspect kept) if taller; the views read as well from it as
    from the full crop (docs/accuracy.md) and it holds a few kB."""
    h, w = gray.shape
    if h <= SOURCE_HEIGHT:
        return gray
    size = (max(1, round(w * SOURCE_HEIGHT / h)), SOURCE_HEIGHT)
    return np.asarray(Image.fromarray(gray).resize(size, Image.BILINEAR))


def unbent_views(source: np.ndarray, height: int, width: int, keep_aspect: bool
                 ) -> tuple[np.ndarray, tuple[float, ...]]:
    """uint8 [h, w] (a ``source_image``) -> (uint8 [V, height, width], the V angles): the
    crop unbent along each of ``UNBEND_ANGLES`` that fits it (``unbend_arc``), each resized
    as ``resize`` does; V may be 0."""
    views, angles = [], []
    for angle in UNBEND_ANGLES:
        straight = unbend_arc(source, angle)
        if straight is not None:
            views.append(resize(straight, height, width, keep_aspect))
            angles.append(angle)
    array = np.stack(views) if views else np.zeros((0, height, width), np.uint8)
    return array, tuple(angles)


# A crop at least this many times as tall as it is wide may hold a word written upwards or
# downwards (a shop's vertical sign, a spine, a photo taken sideways): readers also read it
# turned a quarter each way and keep the reading they are surest of (``turned_views``).
TURN_RATIO = 1.25
TURNS = ("clockwise", "anticlockwise")           # the views ``turned_views`` gives, in order


# A greedy reading less probable than this (p(text | image), all alignments) is unsure:
# readers also read the crop framed tighter and looser (``framed_views``) and keep the reading
# ranked first. Word crops come cut loosely or tightly, and a network reads some framings
# better than others.
UNSURE = 0.5
FRAMES = ("tighter", "looser")                   # the views ``framed_views`` gives, in order
FRAME_MARGIN = (0.08, 0.04)                      # of the height, of the width: cut or added


def framed_views(image: np.ndarray) -> np.ndarray:
    """A prepared uint8 [H, W] image -> uint8 [2, H, W]: it with ``FRAME_MARGIN`` cut from
    each side (tighter) and added to each side (looser, the edge pixels repeated), each
    resized back to [H, W]."""
    h, w = image.shape
    dy, dx = max(1, round(FRAME_MARGIN[0] * h)), max(1, round(FRAME_MARGIN[1] * w))
    tighter = image[dy:h - dy, dx:w - dx] if h > 2 * dy and w > 2 * dx else image
    looser = np.pad(image, ((dy, dy), (dx, dx)), mode="edge")
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(v)).resize(
        (w, h), Image.BILINEAR)) for v in (tighter, looser)])


def prepare_image(image, height: int, width: int, keep_aspect: bool, grayscale: str
                  ) -> np.ndarray:
    """An image (encoded bytes or an array) -> uint8 [height, width], as the loader prepares
    a record's: ``images.to_grayscale`` then ``resize``. Readers outside the loader
    (``recognize``, the ONNX reader, the benchmarks) prepare with this."""
    return resize(to_grayscale(image, grayscale), height, width, keep_aspect)


def turned_views(gray: np.ndarray, height: int, width: int, keep_aspect: bool
                 ) -> np.ndarray | None:
    """uint8 [h, w] -> uint8 [2, height, width]: the crop turned a quarter clockwise and a
    quarter anticlockwise, each resized as ``resize`` does; None unless h >= ``TURN_RATIO``
    * w (a wide crop is read as it is)."""
    h, w = gray.shape
    if h < TURN_RATIO * w:
        return None
    return np.stack([resize(np.ascontiguousarray(np.rot90(gray, k)), height, width, keep_aspect)
                     for k in (-1, 1)])


def prepare_views(image, height: int, width: int, keep_aspect: bool, grayscale: str,
                  unbend: bool = False
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``prepare_image``, ``turned_views`` and, with ``unbend``, ``source_image`` of one
    image (decoded once): (uint8 [height, width], uint8 [2, height, width] or None, uint8
    [h, w] or None)."""
    gray = to_grayscale(image, grayscale)
    return (resize(gray, height, width, keep_aspect),
            turned_views(gray, height, width, keep_aspect),
            source_image(gray) if unbend else None)


def _toward(value: float, neutral: float, strength: float) -> float:
    """``value``'s distance from ``neutral`` (the value that changes nothing) scaled by
    ``strength``; exactly ``value`` at strength 1."""
    return value if strength == 1 else neutral + (value - neutral) * strength


# Crop jitter cuts up to this share of the width from the left and from the right edge (and
# pads up to ``EDGE_PAD``): the recipe's. A crop cut tight around its word loses a final full
# stop or a thin first letter to a few per cent (``augment``'s ``edge_cut``).
EDGE_CUT = 0.06
EDGE_PAD = 0.04


def augment(example: dict | Problem, rng: np.random.Generator, strength: float = 1.0,
            edge_cut: float = EDGE_CUT) -> dict | Problem:
    """Training-time variation of one preprocessed example (its uint8 [H, W] image), for any
    source: some written along an arc (``bend_arc``, the new crop resized to the old size, as
    a curved word's crop is), half ``distort``-ed (angle, shear, perspective, curve), crop
    jitter (edges cut or padded by up to ~8% of the size), then with some probability low
    resolution or blur, lower contrast, inverted polarity, noise. Problems pass through.

    ``strength`` (``config.data.augment_strength``) scales how often and how far: the
    chances of the arc, the distortion, low resolution, blur, lower contrast and noise, and
    the distortion's bounds, the blur's radius, the resolution's and contrast's loss and the
    noise's level. 1 is the recipe's, image for image; 0 leaves only crop jitter and
    polarity. ``edge_cut`` (``config.data.augment_edge_cut``): the most of the width crop
    jitter cuts from each side; ``EDGE_CUT`` is the recipe's, image for image."""
    if isinstance(example, Problem):
        return example
    img = example["image"]
    h, w = img.shape
    if rng.random() < ARC_PROBABILITY * strength:
        angle = rng.uniform(*ARC_ANGLES) * rng.choice((-1.0, 1.0))
        img = np.asarray(Image.fromarray(bend_arc(img, angle)).resize(
            (w, h), Image.Resampling.BILINEAR))
    if rng.random() < 0.5 * strength:
        img = distort(img, rng, strength)
    out = Image.fromarray(img)
    if rng.random() < 0.5:
        dx0, dx1 = (rng.uniform(-EDGE_PAD, edge_cut, 2) * w).round()
        dy0, dy1 = (rng.uniform(-0.06, 0.08, 2) * h).round()
        box = (dx0, dy0, w - dx1, h - dy1)
        if box[2] - box[0] >= w // 2 and box[3] - box[1] >= h // 2:
            padded = np.pad(img, ((h // 4, h // 4), (w // 8, w // 8)), mode="edge")
            out = Image.fromarray(padded).transform(
                (w, h), Image.Transform.EXTENT,
                (box[0] + w // 8, box[1] + h // 4, box[2] + w // 8, box[3] + h // 4),
                Image.Resampling.BILINEAR)
    u = rng.random()
    if u < 0.15 * strength:
        f = _toward(rng.uniform(1.3, 2.5), 1.0, strength)
        out = out.resize((max(1, round(w / f)), max(1, round(h / f))), Image.Resampling.BOX)
        out = out.resize((w, h), Image.Resampling.BILINEAR)
    elif u < 0.35 * strength:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * strength))
    a = np.asarray(out, np.float32)
    if rng.random() < 0.2 * strength:
        a = a.mean() + (a - a.mean()) * max(0.25, _toward(rng.uniform(0.4, 0.9), 1.0, strength))
    if rng.random() < 0.1:
        a = 255.0 - a
    if rng.random() < 0.2 * strength:
        a = a + rng.standard_normal(a.shape, np.float32) * rng.uniform(2, 10) * strength
    return {**example, "image": np.clip(a + 0.5, 0, 255).astype(np.uint8)}


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Record -> example dict (see module doc, one row) or a ``Problem``; picklable.

    Args:
      charset: the label alphabet.
      height, width: the model's input size in pixels.
      max_label_length: L, the label padding length; longer texts are 'too_long'.
      max_frames: the model's output frames; texts needing more CTC frames
        (length + repeated neighbours) are 'too_long'.
      keep_aspect: scale to the height and pad the width instead of stretching.
      grayscale: colour to gray, ``images.GRAY_MODES`` ('principal' keeps hue contrast).
      augment: training streams add ``augment`` after this (evaluation never does).
      augment_strength: ``augment``'s ``strength``.
      augment_edge_cut: ``augment``'s ``edge_cut``.
      policy: ``{case: action}``, see POLICIES; a 'fail' raises DataError with the key.
      keep_case: the example's ``text`` keeps the label's case even where the policy
        lowercases it to encode it (``evaluate --case_sensitive`` compares true case).
      adapt_labels: labels go through ``adapt_label`` (characters outside the charset
        are removed, never a reason to skip; the ``unknown_chars`` policy is not used): the
        benchmark protocol, ``evaluate --benchmark``. A label left empty is 'empty_label'.
      turn: each example also has ``turned``: ``turned_views`` of its image (None for a
        crop that is not tall), for an ``Evaluator`` that reads tall crops turned.
      unbend: each example also has ``source``: ``source_image`` of its crop, for an
        ``Evaluator`` that reads unsure crops unbent.
    """

    charset: Charset
    height: int = 32
    width: int = 100
    max_label_length: int = 25
    max_frames: int = 26
    keep_aspect: bool = False
    grayscale: str = "principal"
    augment: bool = False
    augment_strength: float = 1.0
    augment_edge_cut: float = EDGE_CUT
    policy: tuple = tuple(sorted(DEFAULT_POLICY.items()))
    keep_case: bool = False
    adapt_labels: bool = False
    turn: bool = False
    unbend: bool = False

    def __post_init__(self):
        if self.grayscale not in GRAY_MODES:
            raise DataError(f"config.data.grayscale={self.grayscale!r}: choose one of "
                            f"{GRAY_MODES}")

    def _reject(self, case: str, key: str, reason: str) -> Problem:
        if dict(self.policy)[case] == "fail":
            raise DataError(f"record {key!r}: {reason} (data policy {case}=fail)")
        return Problem(key, f"{case}: {reason}")

    def text_to_ids(self, key: str, text: str) -> tuple[str, list[int]] | Problem:
        policy = dict(self.policy)
        text = original = text.strip()
        if not text:
            return self._reject("empty_label", key, "empty label")
        if self.adapt_labels:
            text = adapt_label(original, self.charset)
            if not text:
                return self._reject("empty_label", key, f"label {original!r} has no character "
                                    "in the charset")
            if self.keep_case:
                original = adapt_label(original, self.charset, keep_case=True)
        elif policy["unknown_chars"] == "lower":
            # Only what the charset lacks: a cased charset keeps the label's case.
            text = "".join(c if c in self.charset else c.lower() for c in text)
        unknown = self.charset.unknown_chars(text)
        if unknown:
            return self._reject("unknown_chars", key,
                                f"label {text!r} has characters {''.join(unknown)!r} "
                                "outside the charset")
        ids = self.charset.encode(text)
        if len(ids) > self.max_label_length or required_frames(ids) > self.max_frames:
            return self._reject("too_long", key,
                                f"label {text!r} needs {required_frames(ids)} CTC frames and "
                                f"{len(ids)} label slots; the model has {self.max_frames} frames, "
                                f"labels are padded to {self.max_label_length}")
        return (original if self.keep_case else text), ids

    def __call__(self, record: dict) -> dict | Problem:
        key = str(record.get("key", "?"))
        if record.get("missing"):
            return self._reject("missing_record", key, record["missing"])
        encoded = self.text_to_ids(key, str(record.get("text", "")))
        if isinstance(encoded, Problem):
            return encoded
        text, ids = encoded
        try:
            image, turned, source = prepare_views(record["image"], self.height, self.width,
                                                  self.keep_aspect, self.grayscale, self.unbend)
        except Exception as e:  # noqa: BLE001 -- any decoder failure is a bad image
            return self._reject("bad_image", key, f"image does not decode ({type(e).__name__}: {e})")
        labels = np.zeros(self.max_label_length, np.int32)
        labels[:len(ids)] = ids
        example = {"image": image, "labels": labels, "length": len(ids), "key": key,
                   "text": text, "lexicon": record.get("lexicon")}
        if self.turn:
            example["turned"] = turned
        if self.unbend:
            example["source"] = source
        return example


@dataclasses.dataclass(frozen=True)
class CountEveryRecord:
    """A ``Preprocess`` that drops nothing: a record it would skip becomes a placeholder row.

    The placeholder has a blank image, an empty label and the record's text; its
    ``problem`` is the skip reason ('case: detail'), every other row's is None. Batches
    then hold every record of the source, in order, and ``meta['problem']`` says which
    rows must be scored as wrong (``evaluate --benchmark``). Lexicons are dropped (the
    protocol is lexicon-free). Picklable, like the ``Preprocess`` it wraps.
    """

    preprocess: Preprocess

    @property
    def augment(self) -> bool:          # make_dataset asks; evaluation never augments
        return False

    def __call__(self, record: dict) -> dict:
        out = self.preprocess(record)
        if isinstance(out, Problem):
            p = self.preprocess
            return {"image": np.zeros((p.height, p.width), np.uint8),
                    "labels": np.zeros(p.max_label_length, np.int32), "length": 0,
                    "key": out.key, "text": str(record.get("text", "")).strip(),
                    "lexicon": None, "problem": out.reason, **({"turned": None} if p.turn else {}),
                    **({"source": None} if p.unbend else {})}
        return {**out, "lexicon": None, "problem": None}
