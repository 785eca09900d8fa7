"""The GRCL's stride-1 'SAME' convolutions (NHWC x HWIO -> NHWC), two ways.

``impl='winograd'``: 3x3 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
Gray, 2016). Each 2x2 block of outputs comes from a 4x4 tile of the input: the tile is
transformed (``Bt d B``: additions only), multiplied elementwise with the transformed kernel
(``G g Gt``) and summed over input channels (16 matrix products [tiles, Cin] x [Cin, Cout],
one per position in the tile), and transformed back (``At m A``: additions only). That is
16 multiplications per 4 outputs where a direct convolution does 36: 2.25x fewer FLOPs in the
products, and no convolution op in the program at all, only slices, additions and matrix
products. Its backward pass is written by hand (``custom_vjp``): the input gradient is the same
construction with the transposed transforms, the kernel gradient 16 products [Cin, tiles] x
[tiles, Cout] of the tiles of the channel-major input, which are recomputed rather than saved
(4x the input's size). On XLA:CPU this is faster than its convolutions, forward and backward,
and it removes a CPU-specific problem: inside the GRCL's ``lax.scan``, the kernel gradient of
``lax.conv_general_dilated`` runs as a naive loop nest (benchmarks/NOTES.md, 1 and
8). The results equal a direct convolution's to float32 rounding, and to ~1e-15 in float64
(tests/models/test_conv.py).

``impl='xla'``: ``lax.conv_general_dilated`` and autodiff: the backend's own convolutions
(cuDNN on GPUs).

``prepare_kernel`` is separate from ``conv`` so that a kernel shared by the T recurrent
iterations is transformed once, outside the scan.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("winograd", "xla")
_DIMS = ("NHWC", "HWIO", "NHWC")

# F(2x2, 3x3): Y = At [(G g Gt) * (Bt d B)] A for a 4x4 input tile d and a 3x3 kernel g.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def resolve_impl(impl: str) -> str:
    """'auto' -> 'winograd' on the CPU, 'xla' on accelerators; others are checked and kept."""
    if impl == "auto":
        return "winograd" if jax.default_backend() == "cpu" else "xla"
    if impl not in IMPLS:
        raise ValueError(f"conv_impl={impl!r}: choose auto, {' or '.join(IMPLS)}")
    return impl


def _combine(terms: list[jax.Array], matrix: np.ndarray) -> list[jax.Array]:
    """``[sum_j matrix[i, j] * terms[j] for i]`` written as additions and subtractions (the
    transforms' coefficients are 0 and +-1), so XLA fuses each into one elementwise pass."""
    out = []
    for row in matrix:
        acc = None
        for coef, term in zip(row, terms):
            if coef == 0:
                continue
            term = term if coef == 1 else -term
            acc = term if acc is None else acc + term
        out.append(acc)
    return out


def prepare_kernel(kernel: jax.Array, impl: str) -> jax.Array:
    """A 3x3 HWIO kernel [3,3,Cin,Cout] as ``conv`` takes it: transformed for 'winograd'
    ([4,4,Cin,Cout], ``G g Gt``), as it is for 'xla'."""
    if kernel.shape[:2] != (3, 3):
        raise ValueError(f"expected a 3x3 kernel, got shape {kernel.shape}")
    if impl == "winograd":
        g = jnp.asarray(_G, kernel.dtype)
        return jnp.einsum("ak,klio,bl->abio", g, kernel, g)
    return kernel


def conv(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    """x [B,H,W,Cin] * a ``prepare_kernel`` kernel -> [B,H,W,Cout], stride 1, zero padding 1.

    Computed in x's dtype (cast the kernel to it before ``prepare_kernel``)."""
    if impl == "xla":
        return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMS)
    return _winograd(x, kernel)


# ----------------------------------------------------------------------------- F(2x2, 3x3)
def _tiles(x: jax.Array, h_axis: int, w_axis: int) -> list[jax.Array]:
    """``Bt d B`` for every 4x4 input tile d (tiles at stride 2, zero padding 1): 16 arrays,
    entry 4a+b for tile position (a, b), each x's layout with H, W -> ceil(H/2), ceil(W/2).
    No stacking: a 16-way concatenate is a slow copy on XLA:CPU, 16 separate products not."""
    h, w = x.shape[h_axis], x.shape[w_axis]
    nh, nw = -(-h // 2), -(-w // 2)
    pad = [(0, 0)] * x.ndim
    pad[h_axis], pad[w_axis] = (1, 2 * nh + 1 - h), (1, 2 * nw + 1 - w)
    xp = jnp.pad(x, pad)

    def entry(r: int, s: int) -> jax.Array:            # d[r, s] of every tile
        start, limit, strides = [0] * x.ndim, list(xp.shape), [1] * x.ndim
        start[h_axis], start[w_axis] = r, s
        limit[h_axis], limit[w_axis] = r + 2 * nh - 1, s + 2 * nw - 1
        strides[h_axis] = strides[w_axis] = 2
        return lax.slice(xp, start, limit, strides)

    rows = [_combine([entry(r, s) for r in range(4)], _BT) for s in range(4)]    # [s][a]
    v = [_combine([rows[s][a] for s in range(4)], _BT) for a in range(4)]       # [a][b]
    return [v[a][b] for a in range(4) for b in range(4)]


# Where each row (column) of the input of a 3x3 'SAME' convolution gets its share of the
# tiles: row 2a + p is padded row 2a + p + 1, which is entry 1 of tile a and entry 3 of tile
# a - 1 for p = 0, entry 0 of tile a + 1 and entry 2 of tile a for p = 1: (entry, tile offset).
_SHARES = {0: ((1, 0), (3, -1)), 1: ((0, 1), (2, 0))}


def _tiles_transpose(dv: list[jax.Array], h: int, w: int) -> jax.Array:
    """The transpose of ``_tiles`` (NHWC): 16 arrays [B, nh, nw, C] -> [B, h, w, C].

    Each of the output's four (row, column) parity planes is one elementwise sum of four
    shifted arrays, then one interleave (benchmarks/NOTES.md, 26: with the train
    step's XLA preset, 2-3% faster steps than overlap-adding the padded tiles per axis).
    """
    b, nh, nw, c = dv[0].shape
    v = [dv[4 * a:4 * a + 4] for a in range(4)]
    rows = [_combine([v[a][e] for a in range(4)], _BT.T) for e in range(4)]      # [e][r]
    d = [_combine([rows[e][r] for e in range(4)], _BT.T) for r in range(4)]     # [r][s]

    def at(t: jax.Array, di: int, dj: int) -> jax.Array:
        # t[:, a + di, b + dj] for every tile (a, b), zero outside; di, dj in {-1, 0, 1}.
        if di == dj == 0:
            return t
        t = jnp.pad(t, ((0, 0), (max(-di, 0), max(di, 0)), (max(-dj, 0), max(dj, 0)), (0, 0)))
        return t[:, max(di, 0):max(di, 0) + nh, max(dj, 0):max(dj, 0) + nw]

    planes = [[sum(at(d[r][s], di, dj) for r, di in _SHARES[p] for s, dj in _SHARES[q])
               for q in range(2)] for p in range(2)]
    # Interleave: [B, nh, 2, nw, 2, C] -> [B, 2nh, 2nw, C].
    y = jnp.stack([jnp.stack(planes[p], axis=3) for p in range(2)], axis=2)
    return y.reshape(b, 2 * nh, 2 * nw, c)[:, :h, :w]


def _untile(m: list[jax.Array], h: int, w: int) -> jax.Array:
    """``At m A`` for every tile, interleaved: 16 arrays [B, nh, nw, O] -> [B, h, w, O]."""
    b, nh, nw, o = m[0].shape
    cols = [_combine([m[4 * a + e] for a in range(4)], _AT) for e in range(4)]    # [e][i]
    y = [_combine([cols[e][i] for e in range(4)], _AT) for i in range(2)]       # [i][j]
    # Interleave the 2x2 outputs of every tile: [B, nh, 2, nw, 2, O] -> [B, 2nh, 2nw, O].
    y = jnp.stack([jnp.stack(y[i], axis=3) for i in range(2)], axis=2)
    return y.reshape(b, 2 * nh, 2 * nw, o)[:, :h, :w]


def _untile_transpose(dy: jax.Array) -> list[jax.Array]:
    """The transpose of ``_untile``: dy [B, h, w, O] -> 16 arrays [B, nh, nw, O]."""
    b, h, w, o = dy.shape
    nh, nw = -(-h // 2), -(-w // 2)
    dy = jnp.pad(dy, ((0, 0), (0, 2 * nh - h), (0, 2 * nw - w), (0, 0)))
    d = dy.reshape(b, nh, 2, nw, 2, o)
    rows = [_combine([d[:, :, i, :, j] for i in range(2)], _AT.T) for j in range(2)]  # [j][a]
    m = [_combine([rows[j][a] for j in range(2)], _AT.T) for a in range(4)]          # [a][e]
    return [m[a][e] for a in range(4) for e in range(4)]


@jax.custom_vjp
def _winograd(x: jax.Array, u: jax.Array) -> jax.Array:
    v = _tiles(x, 1, 2)
    m = [jnp.einsum("bhwc,co->bhwo", v[e], u[e // 4, e % 4]) for e in range(16)]
    return _untile(m, x.shape[1], x.shape[2])


def _winograd_forward(x, u):
    # Residuals: x and the kernel, not the tiles (4x x's size): they are recomputed below.
    return _winograd(x, u), (x, u)


def _winograd_backward(residuals, dy):
    x, u = residuals
    dm = _untile_transpose(dy)
    dv = [jnp.einsum("bhwo,co->bhwc", dm[e], u[e // 4, e % 4]) for e in range(16)]
    dx = _tiles_transpose(dv, x.shape[1], x.shape[2])
    # The kernel gradient contracts over tiles: [Cin, tiles] x [tiles, Cout]. Tiles of the
    # channel-major x give the left operand in the layout the product wants, so one transpose
    # of x replaces the transposes of 16 tile arrays (4x x's size) autodiff would make.
    vt = _tiles(x.transpose(3, 0, 1, 2), 2, 3)
    du = jnp.stack([jnp.einsum("cbhw,bhwo->co", vt[e], dm[e]) for e in range(16)])
    return dx, du.reshape(u.shape)


_winograd.defvjp(_winograd_forward, _winograd_backward)


def conv3x3(x: jax.Array, kernel: jax.Array, impl: str, dtype: Any) -> jax.Array:
    """A 3x3 'SAME' convolution of x with an untransformed HWIO kernel, in ``dtype``."""
    return conv(x.astype(dtype), prepare_kernel(kernel.astype(dtype), impl), impl)


def taps3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 'SAME' convolution of a one-channel x [B,H,W,1] with an HWIO kernel [3,3,1,Cout]
    -> [B,H,W,Cout], as nine shifted copies of x times a kernel row, summed: one elementwise
    pass, no product. In x's dtype.

    For the network's first layer in inference. XLA:CPU's own convolution of one input channel
    falls off a cliff from a batch of 64 on (1.1 ms for 32 images, 15 ms for 64, 24 ms for 100
    on the 2-core AVX-512 VM; this 1.8 ms for 100: benchmarks/NOTES.md, 30), but autodiff of
    this form is slower than the convolution's gradient at a batch of 32 (NOTES.md, 27), so
    training keeps the convolution.
    """
    if x.shape[-1] != 1 or kernel.shape[:3] != (3, 3, 1):
        raise ValueError(f"taps3x3 takes one input channel and a [3,3,1,C] kernel, got x "
                         f"{x.shape} and kernel {kernel.shape}")
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    terms = [xp[:, i:i + h, j:j + w] * kernel[i, j, 0] for i in range(3) for j in range(3)]
    return functools.reduce(operator.add, terms)


def conv1x1(x: jax.Array, kernel: jax.Array, dtype: Any) -> jax.Array:
    """A 1x1 convolution (a per-pixel matrix product): x [B,H,W,Cin], kernel [1,1,Cin,Cout]."""
    return _conv1x1(x.astype(dtype), kernel.astype(dtype))


@jax.custom_vjp
def _conv1x1(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jnp.einsum("bhwc,co->bhwo", x, kernel[0, 0])


def _conv1x1_forward(x, kernel):
    return _conv1x1(x, kernel), (x, kernel)


def _conv1x1_backward(residuals, dy):
    # As in the 3x3 kernel gradient: channel-major x (the same transpose, which XLA shares
    # when both convolutions read the same x) makes the product's operands need no copies.
    x, kernel = residuals
    dx = jnp.einsum("bhwo,co->bhwc", dy, kernel[0, 0])
    dk = jnp.einsum("cbhw,bhwo->co", x.transpose(3, 0, 1, 2), dy)
    return dx, dk.reshape(kernel.shape)


_conv1x1.defvjp(_conv1x1_forward, _conv1x1_backward)
