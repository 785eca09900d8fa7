"""SynthWords' painting: colours, backgrounds, effects, light and degradation.

Text and background colours (grey, tinted, a hue step of similar luminance, or a pair
measured on real crops when a palette is given: ``synth.palettes``),
background variations (gradients, low-frequency noise, stripes, grain, lines, stray
letters) along a colour direction, drop shadows, 3D extrusion, outlines, bevels, uneven
light and cast shadows (``compose``); then low resolution, blur or motion blur, noise and
JPEG artifacts (``degrade``). See ``synth``.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from grcnn_jax.data.synth.text import load_font


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
        font = load_font(fonts[int(rng.integers(len(fonts)))], int(rng.integers(h // 2, 2 * h)))
        s = "".join(chr(c) for c in rng.integers(97, 123, 12))
        d.text((rng.uniform(-w, w), rng.uniform(-h, h)), s, font=font, fill=255)
    return np.asarray(im, np.float32) * (1 / 255) - 0.5


# --- colours, effects and light ---------------------------------------------------------------

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(c: np.ndarray) -> float:
    return float(np.asarray(c, np.float32) @ _LUMA)


def _tinted(rng: np.random.Generator, level: float) -> np.ndarray:
    """An RGB colour of luminance ~``level`` with a random hue and saturation."""
    c = level + rng.normal(0, rng.uniform(0, 50), 3)
    c = c + (level - _luma(c))
    return np.clip(c, 0, 255).astype(np.float32)


# With a palette (``palettes``: pairs measured on real crops), this share of the words is
# painted in one of its pairs, each channel moved by up to ~PALETTE_JITTER levels.
PALETTE_SHARE = 0.5
PALETTE_JITTER = 12.0


def _colours(rng: np.random.Generator, palette: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(text, background) RGB float32 [3]: grey, tinted with a luminance step, a hue step,
    or (with ``palette``, float32 [N, 2, 3]) a measured pair.

    A hue step (~25%) is two colours of similar luminance, far apart in RGB: red on
    brown, white on pink, blue on purple -- what a luminance conversion nearly erases.
    """
    if palette is not None and rng.random() < PALETTE_SHARE:
        pair = palette[int(rng.integers(len(palette)))]
        pair = pair + rng.uniform(-PALETTE_JITTER, PALETTE_JITTER, (2, 3))
        pair = np.clip(pair, 0, 255).astype(np.float32)
        return pair[0], pair[1]
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


def compose(rng: np.random.Generator, t_mask: np.ndarray, o_mask: np.ndarray | None,
             fonts: Sequence[str], palette: np.ndarray | None = None, relief: bool = False
             ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Paints background, shadow or extrusion, outline, bevel and text, then the light;
    ``palette`` (float32 [N, 2, 3] or None) as ``_colours`` takes it. ``relief``: the
    letters raised from or cut into the surface (``synth.styles``): within 20 levels of
    the background's colour, with a strong bevel (light and dark edges) that shows them.

    Returns:
      (image float32 [H, W, 3] in RGB levels, coverage of everything but the background
      float32 [H, W], the text-background gap: the largest channel difference of the
      colours as chosen, what makes the text visible float32 [H, W]: ``t_mask``, or for
      relief the bevel's edges inside the letters).
    """
    H, W = t_mask.shape
    t_col, b_col = _colours(rng, palette)
    gap = max(float(np.abs(t_col - b_col).max()), 1.0)
    if relief:                       # the surface's own colour; the texture keeps its scale
        t_col = np.clip(b_col + rng.uniform(-20, 20), 0, 255).astype(np.float32)
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
    visible = t_mask
    if relief or rng.random() < 0.07:  # bevel / emboss: light and dark edges of the strokes
        d = int(rng.integers(1, max(2, H // 16) + 1))
        rim = t_mask - _shift(t_mask, d, d)
        if relief:                   # raised (lit above left) or cut in (lit below right)
            img += (rim * rng.uniform(60, 130) * rng.choice([-1.0, 1.0]))[..., None]
            visible = np.maximum(rim, 0)
            occupied = np.maximum(occupied, np.abs(rim))
        else:
            img += (rim * rng.uniform(40, 110))[..., None]
    light = _light(rng, H, W)
    if light is not None:
        img *= light[..., None]
    return img, occupied, gap, visible


_MOTION = {}


def _motion_kernel(angle: int) -> ImageFilter.Kernel:
    """A 5x5 line kernel at 0, 45, 90 or 135 degrees (motion blur)."""
    if angle not in _MOTION:
        k = np.zeros((5, 5))
        for j in range(5):
            k[{0: (2, j), 45: (4 - j, j), 90: (j, 2), 135: (j, j)}[angle]] = 1
        _MOTION[angle] = ImageFilter.Kernel((5, 5), k.ravel().tolist(), scale=5)
    return _MOTION[angle]


def degrade(rng: np.random.Generator, img: np.ndarray, em: float, k: float,
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
