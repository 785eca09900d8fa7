"""SynthWords' geometry: the projective map from the text mask to the output crop.

Stretch, slant, rotation and perspective, then a tight or loose crop scaled to the output
height, all one 3x3 map applied in one resampling (``warp_mask``); and a slight curvature
(``bend_rows``). See ``synth``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

_MAX_ASPECT = 10          # W <= 10 * H


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


def least_scale(m: np.ndarray, pts: np.ndarray) -> float:
    """The least output px per mask px of the projective map ``m`` at the points ``pts``
    [N, 2]: the smallest singular value of its Jacobian there. A mask-px length d near them
    becomes at least d times this many output px, in any direction."""
    p = np.c_[pts, np.ones(len(pts))] @ m.T                       # [N, 3]
    # d(p[:2] / p[2]) / d(x, y) = (m[:2, :2] p[2] - p[:2] m[2, :2]) / p[2]^2
    jac = (m[None, :2, :2] * p[:, 2, None, None]
           - p[:, :2, None] * m[None, 2, None, :2]) / p[:, 2, None, None] ** 2
    return float(np.linalg.svd(jac, compute_uv=False).min())


def warp_mask(mask: Image.Image, fwd: np.ndarray, size: tuple[int, int], ss: int) -> np.ndarray:
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


def crop_map(rng: np.random.Generator, ink: np.ndarray, size: int, height: int,
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


def bend_rows(a: np.ndarray, amount: float) -> np.ndarray:
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
